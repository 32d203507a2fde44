"""Ray job entrypoint for `raycross score`: runs from the uploaded working dir (the repo root).

    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env jobs/runtime_env.yaml \\
        -- python jobs/score.py --config jobs/configs/<recipe>.yaml [--set key=value ...]

Every `raycross score` flag works here (`python jobs/score.py --help`).
"""

import sys
from pathlib import Path

# The working dir uploaded by `ray job submit --working-dir` holds raycross/: import that copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raycross.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
