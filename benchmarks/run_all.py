"""Run every side-by-side benchmark in turn, collect the numbers in one JSON file and one PNG plot.

Order: predict, training, evaluation, mining, quality, scaling. Each runs as a subprocess (repository
root as working directory, `HF_HUB_OFFLINE=1`), its stdout/stderr go to `--logs/<name>.log`, and its
result is parsed from the final ``RESULT {json}`` line (mining: from ``report.json`` in its work
directory). For each benchmark the JSON file records the command, the start time, the wall seconds,
the load averages before/after, the return code, the log path and the parsed result. Results of
benchmarks not run this time are kept from an existing `--out`, so the suite can be rerun piecewise.

Targets: predict >= 1.2x, training >= 1.2x, evaluation >= 1.0x (speed ratios raycross / ST), mining
speed >= 1.0x and peak tree RSS <= 0.5x of ST, quality: raycross NDCG@10 >= ST - 1.0 point.

Run (the whole suite took 16 minutes on the 2-core CPU machine of RESULTS.md):
    python benchmarks/run_all.py
    python benchmarks/run_all.py --only quality,scaling          # rerun a subset, keep the others
    python benchmarks/run_all.py --quick --only predict,quality,scaling --out /tmp/rq.json --plot /tmp/rq.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MINING_WORK = "/tmp/bench-mining-all"
ORDER = ("predict", "training", "evaluation", "mining", "quality", "scaling")
TARGETS = {"predict": 1.2, "training": 1.2, "evaluation": 1.0, "mining": 1.0, "mining_rss": 0.5, "quality": -1.0}


def commands(quick: bool, mining_work: str) -> dict[str, list[str]]:
    """The command line of each benchmark (tiny sizes with `quick`, for smoke tests)."""
    py = sys.executable
    if quick:
        return {
            "predict": [py, "-m", "benchmarks.bench_predict", "--pairs", "64", "--batch-size", "32", "--repeats", "1"],
            "training": [py, "benchmarks/bench_training.py", "--steps", "8", "--skip", "2", "--rounds", "1"],
            "evaluation": [py, "-m", "benchmarks.bench_evaluation", "--queries", "20", "--batch-size", "64",
                           "--repeats", "1"],
            "mining": [py, "benchmarks/bench_mining.py", "scale", "--queries", "2000", "--configs", "top5",
                       "--sides", "st,raycross-local,raycross-ray", "--work", mining_work],
            "quality": [py, "benchmarks/bench_quality.py", "--steps", "4", "--eval-queries", "20"],
            "scaling": [py, "benchmarks/bench_scaling.py", "--workers", "0", "--steps", "6"],
        }
    return {
        "predict": [py, "-m", "benchmarks.bench_predict", "--pairs", "2000", "--batch-size", "32"],
        "training": [py, "benchmarks/bench_training.py", "--steps", "40", "--skip", "5", "--rounds", "2"],
        "evaluation": [py, "-m", "benchmarks.bench_evaluation", "--queries", "500", "--batch-size", "64"],
        "mining": [py, "benchmarks/bench_mining.py", "scale", "--queries", "100000", "--configs", "top5",
                   "--sides", "st,raycross-local,raycross-ray", "--work", mining_work],
        "quality": [py, "benchmarks/bench_quality.py"],
        "scaling": [py, "benchmarks/bench_scaling.py"],
    }


def parse_result(name: str, log: Path, mining_work: str) -> dict[str, Any] | None:
    """The benchmark's numbers: its last `RESULT {json}` line, or mining's report.json."""
    if name == "mining":
        report = Path(mining_work) / "report.json"
        if not report.exists():
            return None
        data = json.loads(report.read_text())
        return {"ratios": data.get("ratios", {}),
                "results": {config: {side: {k: r.get(k) for k in ("mine_s", "process_wall_s", "peak_tree_rss_mb",
                                                                   "peak_tree_pss_mb", "rows")}
                                     for side, r in entry["results"].items()}
                            for config, entry in data.get("configs", {}).items()}}
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else None


def run_one(name: str, command: list[str], logs: Path, mining_work: str) -> dict[str, Any]:
    """Run one benchmark to its log file; the record stored in the JSON file."""
    log = logs / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if name == "mining":  # a stale report must not pass for this run's
        (Path(mining_work) / "report.json").unlink(missing_ok=True)
    record: dict[str, Any] = {"command": " ".join(command), "started": dt.datetime.now().isoformat(timespec="seconds"),
                              "load_before": list(os.getloadavg()), "log": str(log)}
    print(f"[{record['started']}] {name}: {record['command']} > {log}", flush=True)
    started = time.perf_counter()
    with log.open("w") as f:
        returncode = subprocess.run(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    record.update(wall_s=round(time.perf_counter() - started, 1), load_after=list(os.getloadavg()),
                  returncode=returncode, result=parse_result(name, log, mining_work))
    status = "ok" if returncode == 0 and record["result"] is not None else f"FAILED (rc {returncode}, see {log})"
    print(f"    {name}: {status} in {record['wall_s']:.0f} s, load {record['load_before'][0]:.1f} -> "
          f"{record['load_after'][0]:.1f}", flush=True)
    return record


def _result(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    return (results.get(name) or {}).get("result")


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(benchmark, raycross, ST, ratio, target, met?) for the summary table."""
    rows = []

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    for name, unit in (("predict", "pairs/s"), ("training", "samples/s")):
        r = _result(results, name)
        if r:
            rows.append((name, f"{r['raycross']:.1f} {unit}", f"{r['sentence-transformers']:.1f} {unit}",
                         f"{r['ratio']:.2f}x", f">= {TARGETS[name]}x", met(r["ratio"] >= TARGETS[name])))
    r = _result(results, "evaluation")
    if r:
        rows.append(("evaluation", f"{r['raycross']:.2f} s", f"{r['sentence-transformers']:.2f} s",
                     f"{r['ratio']:.2f}x", f">= {TARGETS['evaluation']}x", met(r["ratio"] >= TARGETS["evaluation"])))
    r = _result(results, "mining")
    if r:
        for config, sides in r["results"].items():
            st = sides.get("st", {})
            for side, values in sides.items():
                ratios = r["ratios"].get(f"{config}/{side}")
                if side == "st" or not ratios:
                    continue
                rows.append((f"mining {config} {side} speed", f"{values['mine_s']:.1f} s", f"{st['mine_s']:.1f} s",
                             f"{ratios['speedup_mine']:.2f}x", f">= {TARGETS['mining']}x",
                             met(ratios["speedup_mine"] >= TARGETS["mining"])))
                in_process = side == "raycross-local"  # the memory target is for the in-process side
                rows.append((f"mining {config} {side} peak RSS", f"{values['peak_tree_rss_mb']:.0f} MB",
                             f"{st['peak_tree_rss_mb']:.0f} MB", f"{ratios['peak_rss_ratio']:.2f}x",
                             f"<= {TARGETS['mining_rss']}x" if in_process else "-",
                             met(ratios["peak_rss_ratio"] <= TARGETS["mining_rss"]) if in_process else "-"))
    r = _result(results, "quality")
    if r:
        rows.append(("quality NDCG@10", f"{r['raycross_ndcg10']:.4f}", f"{r['st_ndcg10']:.4f}",
                     f"{r['delta_points']:+.2f} pts", f">= {TARGETS['quality']:+.1f} pts",
                     met(r["delta_points"] >= TARGETS["quality"])))
    r = _result(results, "scaling")
    if r:
        for n, value in r["samples_per_second"].items():
            speedup = r["runs"][n].get("speedup_vs_0")
            rows.append((f"scaling {n} workers", f"{value:.1f} samples/s", "-",
                         f"{speedup:.2f}x vs n=0" if speedup is not None else "-", "-", "-"))
    return rows


def print_summary(results: dict[str, Any]) -> None:
    header = ("benchmark", "raycross", "ST", "ratio", "target", "met?")
    rows = [header] + summary_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * width for width in widths))


def plot(results: dict[str, Any], path: Path) -> None:
    """Left: speed (and mining memory) ratios vs targets; middle: NDCG@10; right: samples/s vs workers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ratios_ax, quality_ax, scaling_ax) = plt.subplots(1, 3, figsize=(16, 5),
                                                            gridspec_kw={"width_ratios": [2.2, 1, 1]})
    bars: list[tuple[str, float, float]] = []  # (label, value, target)
    for name in ("predict", "training", "evaluation"):
        r = _result(results, name)
        if r:
            bars.append((name, r["ratio"], TARGETS[name]))
    r = _result(results, "mining")
    if r:
        for key, ratios in r["ratios"].items():
            side = key.split("/", 1)[1]
            bars.append((f"mining speed\n{side}", ratios["speedup_mine"], TARGETS["mining"]))
            if side == "raycross-local":  # the in-process side: memory ST / raycross (target: at least 2x)
                bars.append((f"mining memory\nST/{side}", 1 / ratios["peak_rss_ratio"], 1 / TARGETS["mining_rss"]))
    if bars:
        xs = range(len(bars))
        colors = ["tab:green" if value >= target else "tab:red" for _, value, target in bars]
        ratios_ax.bar(xs, [value for _, value, _ in bars], width=0.6, color=colors)
        ratios_ax.set_xlim(-0.7, max(len(bars), 4) - 0.3)
        for x, (_, value, target) in zip(xs, bars):
            ratios_ax.hlines(target, x - 0.35, x + 0.35, colors="black", linestyles="dashed")
            ratios_ax.text(x, value, f"{value:.2f}x", ha="center", va="bottom", fontsize=8)
        ratios_ax.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=8)
    ratios_ax.axhline(1.0, color="gray", linestyle="dashed", linewidth=1)
    ratios_ax.set_ylabel("raycross vs sentence-transformers (higher is better)")
    ratios_ax.set_title("speed ratios (dashed ticks: targets)")

    r = _result(results, "quality")
    if r:
        labels, values = ("candidate order", "sentence-\ntransformers", "raycross"), \
            (r["baseline_ndcg10"], r["st_ndcg10"], r["raycross_ndcg10"])
        quality_ax.bar(labels, values, color=["tab:gray", "tab:blue", "tab:orange"])
        for x, value in enumerate(values):
            quality_ax.text(x, value, f"{value:.4f}", ha="center", va="bottom", fontsize=8)
        quality_ax.set_title(f"WordNet NDCG@10 ({r['steps']} steps, {r['eval_queries']} queries)")
        quality_ax.set_ylim(0, 1)
    else:
        quality_ax.set_title("quality: not run")

    r = _result(results, "scaling")
    if r:
        workers = [int(n) for n in r["samples_per_second"]]
        scaling_ax.plot(workers, list(r["samples_per_second"].values()), "o-", label="overall")
        last = [v if v is not None else float("nan") for v in r["last_window_samples_per_second"].values()]
        scaling_ax.plot(workers, last, "s--", label="last log window")
        scaling_ax.set_xticks(workers)
        scaling_ax.legend(fontsize=8)
        top = max([v for v in [*r["samples_per_second"].values(), *last] if v == v] or [1.0])
        scaling_ax.set_ylim(0, 1.15 * top)
        scaling_ax.set_title("raycross training throughput")
    else:
        scaling_ax.set_title("scaling: not run")
    scaling_ax.set_xlabel("num_workers (0 = in-process)")
    scaling_ax.set_ylabel("samples/s")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--plot", default=str(REPO / "benchmarks" / "results.png"))
    parser.add_argument("--logs", default="/tmp/bench-logs")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke test); mining is skipped unless named in --only")
    parser.add_argument("--mining-work", default=MINING_WORK)
    cli = parser.parse_args()

    selected = cli.only.split(",") if cli.only else list(ORDER)
    unknown = set(selected) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {','.join(ORDER)}")
    if cli.quick and not cli.only:
        selected.remove("mining")
    out, logs = Path(cli.out), Path(cli.logs)
    logs.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(out.read_text()) if out.exists() else {}
    results: dict[str, Any] = stored.get("benchmarks", {})
    cmds = commands(cli.quick, cli.mining_work)
    for name in (n for n in ORDER if n in selected):
        results[name] = run_one(name, cmds[name], logs, cli.mining_work)
        results[name]["quick"] = cli.quick
        # written after each benchmark: an interrupted suite keeps what it finished
        out.write_text(json.dumps({"updated": dt.datetime.now().isoformat(timespec="seconds"),
                                   "targets": TARGETS, "benchmarks": results}, indent=2))
    plot(results, Path(cli.plot))
    print(f"\nresults: {out}\nplot: {cli.plot}\nlogs: {logs}\n")
    print_summary(results)
    return results


if __name__ == "__main__":
    main()
