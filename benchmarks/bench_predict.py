"""predict() throughput, raycross vs sentence-transformers: same model, pairs, batch size, precision.

    python benchmarks/bench_predict.py --pairs 2000 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import alternate, machine_report, median, wordnet_pairs  # noqa: E402


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="model dir (default: the MiniLM weights)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()

    from sentence_transformers import CrossEncoder as STCrossEncoder

    from raycross import CrossEncoder
    from raycross.resources import minilm_path

    model_path = args.model or str(minilm_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = {"torch_dtype": getattr(torch, args.dtype)}
    ours = CrossEncoder(model_path, device=device, model_kwargs=kwargs)
    theirs = STCrossEncoder(model_path, device=device, model_kwargs=kwargs)
    # Same weights: copy ours into theirs (the fresh head is random on a bi-encoder checkpoint).
    theirs.model.load_state_dict(ours.hf_model.state_dict())
    pairs = wordnet_pairs(args.pairs)

    a = ours.predict(pairs, batch_size=args.batch_size)
    b = theirs.predict(pairs, batch_size=args.batch_size)
    max_diff = float(np.abs(a - b).max())
    times = alternate(
        {
            "raycross": lambda: ours.predict(pairs, batch_size=args.batch_size),
            "sentence-transformers": lambda: theirs.predict(pairs, batch_size=args.batch_size),
        },
        repeats=args.repeats,
    )
    print(machine_report())
    print(f"model {model_path}, {len(pairs)} WordNet pairs, batch {args.batch_size}, {args.dtype}, {device}")
    print(f"max |score difference| {max_diff:.2e}")
    result = {}
    for name, values in times.items():
        result[name] = len(pairs) / median(values)
        print(f"{name:>22}: {result[name]:8.1f} pairs/s (median of {len(values)}: {[round(v, 2) for v in values]} s)")
    ratio = result["raycross"] / result["sentence-transformers"]
    print(f"ratio raycross / sentence-transformers: {ratio:.2f}x")
    print("RESULT " + json.dumps({**result, "ratio": ratio}), flush=True)
    return {**result, "ratio": ratio}


if __name__ == "__main__":
    main()
