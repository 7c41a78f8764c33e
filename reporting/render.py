"""render_report: stage outputs -> results/plots/*.png, results/summary.csv, results/report.html.

Called by the render_report rule (workflow/scripts/render_report.py) with the files the workflow
produced, and by tests with synthetic files of the same layout. Each output is written atomically;
the HTML last, so a report that exists is complete.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from host.atomic import write_text_atomic
from reporting import plots
from reporting.html import render_html
from reporting.inputs import load_inputs, pick
from reporting.layout import plot_files
from reporting.references import throughput_references
from reporting.summary import summary_frame, write_csv


def render_report(
    files: list[str | Path],
    models: list[str],
    boards: list[str],
    html_path: str | Path,
    csv_path: str | Path,
    plots_dir: str | Path,
    progress: bool = True,
) -> dict:
    """Read ``files`` (stage outputs, see reporting.inputs), draw, tabulate, write; return a digest."""
    if not models or not boards:
        raise ValueError("the report needs at least one model and one board")
    inputs = load_inputs(files, models, boards)
    frame = summary_frame(inputs)
    paths = plot_files(plots_dir, models, boards)
    notes: dict[str, str] = {}
    builds = [inputs.builds[(m, b)] for m in models for b in boards]

    jobs = [("pareto", lambda p: plots.pareto(frame, throughput_references(), p))]
    notes["pareto"] = ("Ours: Brevitas test accuracy against FINN's estimated throughput, colour = estimated LUT, "
                       "marker = board. Grey diamonds: published on-board figures.")
    if any(b.validation for b in builds):
        jobs.append(("latency", lambda p: plots.latency(builds, p)))
        has_samples = any(pick(b.validation, "reference.latency.latency_us_samples") for b in builds if b.validation)
        notes["latency"] = ("From validation.json: " + ("box plots of the raw samples." if has_samples else
                            "validation.json stores p50 and p99 only (dot = p50, bar = p50..p99). ")
                            + "The accelerator's latency under the emulation backend is FINN's cycle estimate (hollow dot); "
                            "the XNOR reference is measured on the validating CPU.")
    else:
        jobs.append(("latency", lambda p: plots.placeholder(p, "latency", "no validation.json in this run")))
    xnor = inputs.benches.get("xnor")
    if xnor and xnor.get("results"):
        jobs += [("xnor_speed", lambda p: plots.xnor_speed(xnor, p)), ("xnor_roofline", lambda p: plots.xnor_roofline(xnor, p))]
        lce = " and Larq Compute Engine (best of its kernel settings)" if xnor.get("lce") else ""
        notes["xnor_speed"] = (f"From results/bench/xnor.json: the XNOR reference{lce} and PyTorch fp32 on the same random "
                               "networks, one thread, logits checked equal before timing.")
        notes["xnor_roofline"] = ("From results/bench/xnor.json: binary MACs per second against this CPU's ceiling "
                                  "(popcount width x issue rate x clock, binary_mac_ceiling).")
    else:
        for key in ("xnor_speed", "xnor_roofline"):
            jobs.append((key, lambda p, k=key: plots.placeholder(p, k.replace("_", " "), "no results/bench/xnor.json "
                                                                 "in this run (report.benchmarks)")))
    for m in models:
        data = inputs.model_data[m]
        jobs.append((f"training_curves/{m}", lambda p, d=data: plots.training_curves(d, p)))
        notes[f"training_curves/{m}"] = f"{m}: from results/{m}/train/history.csv; test accuracy from metrics.json."
        if data.predictions is not None:
            jobs.append((f"confusion_matrix/{m}", lambda p, d=data: plots.confusion_matrix(d, p)))
            notes[f"confusion_matrix/{m}"] = f"{m}: from results/{m}/report/test_predictions.npz."
        else:
            jobs.append((f"confusion_matrix/{m}",
                         lambda p, m=m: plots.placeholder(p, f"{m}: confusion matrix", "no test predictions in this run")))
        for b in boards:
            build = inputs.builds[(m, b)]
            key = f"layers/{m}/{b}"
            if build.layers is not None and len(build.layers):
                jobs.append((key, lambda p, bd=build: plots.layer_estimates(bd, p)))
                notes[key] = (f"From hw_builds/{m}/{b}/summary.json (FINN's estimate_layer_cycles / estimate_layer_resources). "
                              f"Bottleneck layer: {build.bottleneck or 'n/a'}.")
            else:
                reason = "no FINN build summary in this run" if build.summary is None else "summary.json has no per-layer estimates"
                jobs.append((key, lambda p, m=m, b=b, r=reason: plots.placeholder(p, f"{m} on {b}: per-layer estimates", r)))
    for key, draw in tqdm(jobs, desc="report plots", unit="plot", disable=not progress):
        draw(paths[key])

    write_csv(frame, csv_path)
    write_text_atomic(html_path, render_html(inputs, frame, paths, notes))
    return {"html": str(html_path), "csv": str(csv_path), "plots": list(paths.values()), "rows": len(frame),
            "inputs": len(inputs.files)}
