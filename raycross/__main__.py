"""``python -m raycross ...``: the same command line as the ``raycross`` console script.

Example:
    $ python -m raycross quickstart --quiet
"""

from raycross.cli import main

raise SystemExit(main())
