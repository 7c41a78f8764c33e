"""Names of the report's files: one source for the renderer and for the rule's declared outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path


def plot_files(plots_dir: str | Path, models: list[str], boards: list[str]) -> dict[str, str]:
    """key -> PNG path of every plot, in the order the report shows them."""
    d = Path(plots_dir)
    files = {"pareto": d / "pareto.png", "latency": d / "latency.png", "xnor_speed": d / "xnor_speed.png",
             "xnor_roofline": d / "xnor_roofline.png"}
    for m in models:
        files[f"training_curves/{m}"] = d / f"training_curves_{m}.png"
        files[f"confusion_matrix/{m}"] = d / f"confusion_matrix_{m}.png"
        for b in boards:
            files[f"layers/{m}/{b}"] = d / f"layers_{m}_{b}.png"
    return {k: v.as_posix() for k, v in files.items()}


def plot_outputs(plots_dir: str | Path, models: list[str], boards: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Rule output name -> (PNG path, labels for `snakemake --report`) of every plot."""
    outputs = {}
    for key, path in plot_files(plots_dir, models, boards).items():
        kind, *where = key.split("/")
        labels = {"plot": kind.replace("_", " "), "model": where[0] if where else "all",
                  "board": where[1] if len(where) > 1 else "all"}
        outputs["_".join([kind, *where]).replace("-", "_")] = (path, labels)
    return outputs


def report_input_files(models: list[str], boards: list[str], producible: Callable[[str], bool],
                       benchmarks: Iterable[str] = (), dse: bool = False) -> list[str]:
    """The stage outputs the report reads: training and test predictions of every model (always), and each
    XNOR verification, FINN summary, validation and chosen benchmark that ``producible`` says the workflow makes;
    with ``dse`` also the design-space sweep's summary and plots (results/dse/, made by `snakemake dse`)."""
    files = []
    for m in models:
        files += [f"results/{m}/train/metrics.json", f"results/{m}/train/history.csv",
                  f"results/{m}/report/test_predictions.npz"]
        optional = [f"results/{m}/xnor/verify.json"]
        for b in boards:
            optional += [f"hw_builds/{m}/{b}/summary.json", f"results/{m}/{b}/validation.json"]
        files += [f for f in optional if producible(f)]
    files += [f for f in (f"results/bench/{name}.json" for name in benchmarks) if producible(f)]
    if dse:
        files += ["results/dse/summary.json", "results/dse/pareto.png", "results/dse/setfolding.png"]
    return files
