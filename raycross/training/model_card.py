"""The model card (README.md) written next to the trained model: what it is, how to use it, how it was
trained (datasets, losses, hyperparameters), the training logs table and the final evaluation.

Example:
    >>> card = generate_model_card(model, args, train_specs, {}, losses, log_history)  # doctest: +SKIP
    >>> card.splitlines()[0]  # doctest: +SKIP
    '---'
"""

from __future__ import annotations

import json
import numbers
import platform
from typing import Any

from raycross.data import DatasetSpec


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{value:.4f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_fmt(v) if v != "" else "-" for v in row) + " |" for row in rows]
    return lines


def _short(text: Any, limit: int = 120) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def training_logs_table(log_history: list[dict[str, Any]], eval_columns: list[str] | None = None) -> list[str]:
    """Markdown rows ``Epoch | Step | Training Loss | <eval metrics>`` merged per step.

    Example:
        >>> print("\\n".join(training_logs_table([{"epoch": 0.5, "step": 5, "loss": 0.7},
        ...                                       {"epoch": 0.5, "step": 5, "eval_loss": 0.6}])))
        | Epoch | Step | Training Loss | eval_loss |
        |:---|:---|:---|:---|
        | 0.5000 | 5 | 0.7000 | 0.6000 |
    """
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "step" not in entry or "train_runtime" in entry:
            continue
        row = rows.setdefault(int(entry["step"]), {"epoch": entry.get("epoch", "")})
        row.update({k: v for k, v in entry.items() if k == "loss" or k.startswith("eval_")})
    if eval_columns is None:
        eval_columns = sorted({k for r in rows.values() for k in r if k.startswith("eval_") and k != "eval_runtime"})
    header = ["Epoch", "Step", "Training Loss", *eval_columns]
    body = [[r.get("epoch", ""), step, r.get("loss", ""), *[r.get(c, "") for c in eval_columns]]
            for step, r in sorted(rows.items())]
    return _table(header, body)


def _dataset_section(title: str, specs: dict[str, DatasetSpec], losses: dict[str, Any]) -> list[str]:
    lines = [f"### {title}", ""]
    for name, spec in specs.items():
        lines += [f"#### {name}", "", f"* Size: {spec.num_rows:,} rows",
                  f"* Columns: {', '.join(f'`{c}`' for c in spec.columns)}"
                  + (f" (label: `{spec.label_column}`)" if spec.label_column else ""), ""]
        if spec.sample_row:
            lines += _table(spec.columns, [[_short(spec.sample_row.get(c, "")) for c in spec.columns]]) + [""]
        loss = losses.get(name)
        if loss is not None:
            config = loss.get_config_dict() if hasattr(loss, "get_config_dict") else {}
            lines += [f"* Loss: `{type(loss).__module__}.{type(loss).__name__}` with these parameters:",
                      "  ```json", "  " + json.dumps(config, indent=2, default=str).replace("\n", "\n  "), "  ```", ""]
    return lines


def generate_model_card(
    model: Any,
    args: Any,
    train_specs: dict[str, DatasetSpec],
    eval_specs: dict[str, DatasetSpec],
    losses: dict[str, Any],
    log_history: list[dict[str, Any]],
    final_metrics: dict[str, float] | None = None,
    eval_losses: dict[str, Any] | None = None,
    primary_metrics: list[str] | None = None,
) -> str:
    """Markdown model card with YAML front matter (sentence-transformers style)."""
    import torch
    import transformers

    from raycross import __version__

    base = getattr(model, "model_name_or_path", None) or "a transformer encoder"
    num_labels = int(model.num_labels)
    total_rows = sum(s.num_rows for s in train_specs.values())
    loss_names = sorted({type(l).__name__ for l in losses.values()})
    pipeline = "text-ranking" if num_labels == 1 else "text-classification"
    activation = f"{type(model.activation_fn).__module__}.{type(model.activation_fn).__name__}"
    front = ["---", "library_name: sentence-transformers", "tags:", "- sentence-transformers", "- cross-encoder",
             "- raycross", "- generated_from_trainer", f"- dataset_size:{total_rows}",
             *[f"- loss:{n}" for n in loss_names], f"base_model: {base}", f"pipeline_tag: {pipeline}", "---", ""]
    lines = front + [
        f"# CrossEncoder based on {base}", "",
        f"This is a [Cross Encoder](https://www.sbert.net/docs/cross_encoder/usage/usage.html) model finetuned "
        f"from `{base}` with raycross on {total_rows:,} training rows. "
        + ("It computes a relevance score for a pair of texts, for text reranking and semantic search."
           if num_labels == 1 else f"It classifies pairs of texts into {num_labels} classes."), "",
        "## Model Details", "",
        "- **Model Type:** Cross Encoder",
        f"- **Base model:** `{base}`",
        f"- **Maximum Sequence Length:** {model.max_length} tokens",
        f"- **Number of Output Labels:** {num_labels} label{'s' if num_labels > 1 else ''}",
        f"- **Activation Function:** `{activation}`",
        f"- **Training Datasets:** {', '.join(train_specs)}", "",
        "## Usage", "",
        "```python",
        "from raycross import CrossEncoder  # or: from sentence_transformers import CrossEncoder",
        "",
        'model = CrossEncoder("path/to/this/model")',
        'scores = model.predict([("How many people live in Berlin?", "Berlin has 3.5 million inhabitants.")])',
        "```", "",
    ]
    final_metrics = final_metrics or {}
    shown = {k: v for k, v in final_metrics.items() if k.startswith("eval_") and k != "eval_runtime"}
    if shown:
        lines += ["## Evaluation", "", "### Metrics", "", *_table(["Metric", "Value"], [[k[5:], v] for k, v in sorted(shown.items())]), ""]
    lines += ["## Training Details", ""]
    lines += _dataset_section("Training Dataset" + ("s" if len(train_specs) > 1 else ""), train_specs, losses)
    if eval_specs:
        lines += _dataset_section("Evaluation Dataset" + ("s" if len(eval_specs) > 1 else ""), eval_specs,
                                  eval_losses or {})
    hyper = args.non_default_dict() if hasattr(args, "non_default_dict") else {}
    lines += ["### Training Hyperparameters", "", "#### Non-Default Hyperparameters", ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(hyper.items())] or ["- (all defaults)"]
    lines += [""]
    if log_history:
        columns = None
        if primary_metrics:
            seen = {k for e in log_history for k in e}
            columns = [c for c in ([*(k for k in sorted(seen) if k.startswith("eval_") and k.endswith("_loss")),
                                    *(k for k in sorted(seen) if k == "eval_loss")] + primary_metrics) if c in seen]
            columns = list(dict.fromkeys(columns))
        lines += ["### Training Logs", "", *training_logs_table(log_history, columns), ""]
    lines += [
        "### Framework Versions", "",
        f"- Python: {platform.python_version()}",
        f"- raycross: {__version__}",
        f"- Transformers: {transformers.__version__}",
        f"- PyTorch: {torch.__version__}",
    ]
    try:
        import ray

        lines.append(f"- Ray: {ray.__version__}")
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return "\n".join(lines) + "\n"
