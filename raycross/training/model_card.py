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
    """Record the run in ``model.model_card_data`` (tags, datasets, losses, hyperparameters, logs, final
    metrics) and render the card; later saves and ``push_to_hub`` write the same trained card."""
    from raycross.model_card import render_model_card

    card = model.model_card_data
    total_rows = sum(s.num_rows for s in train_specs.values())
    card.tags = [t for t in card.tags if not t.startswith("dataset_size:")]
    card.add_tags(["generated_from_trainer", f"dataset_size:{total_rows}"])
    card.set_losses(list(losses.values()))
    for attribute, specs in (("train_datasets", train_specs), ("eval_datasets", eval_specs)):
        if not getattr(card, attribute):
            setattr(card, attribute, [{"name": name} for name in specs])
    card.non_default_hyperparameters = args.non_default_dict() if hasattr(args, "non_default_dict") else {}
    card.all_hyperparameters = args.to_dict() if hasattr(args, "to_dict") else {}
    shown = {k[5:]: v for k, v in (final_metrics or {}).items() if k.startswith("eval_") and k != "eval_runtime"}
    if shown and not card.eval_results:  # Ray runs evaluate on the workers: take the final metrics
        card.eval_results = [{"evaluator": "final", "name": "", "description": "Final evaluation",
                              "primary_metric": None, "metrics": shown, "epoch": None, "step": None}]
    lines = _dataset_section("Training Dataset" + ("s" if len(train_specs) > 1 else ""), train_specs, losses)
    if eval_specs:
        lines += _dataset_section("Evaluation Dataset" + ("s" if len(eval_specs) > 1 else ""), eval_specs,
                                  eval_losses or {})
    lines += ["### Training Hyperparameters", "", "#### Non-Default Hyperparameters", ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(card.non_default_hyperparameters.items())] or ["- (all defaults)"]
    lines += [""]
    if log_history:
        columns = None
        if primary_metrics:
            seen = {k for e in log_history for k in e}
            columns = [c for c in ([*(k for k in sorted(seen) if k.startswith("eval_") and k.endswith("_loss")),
                                    *(k for k in sorted(seen) if k == "eval_loss")] + primary_metrics) if c in seen]
            columns = list(dict.fromkeys(columns))
        lines += ["### Training Logs", "", *training_logs_table(log_history, columns), ""]
    card.training_details = "\n".join(lines)
    return render_model_card(model)
