"""The report's figures (matplotlib, Agg): each function draws one PNG from already-loaded inputs.

Every function writes its file atomically and returns the path. Where a figure has nothing to
show (the stage did not run), :func:`placeholder` draws a panel that says why, so the report never
shows an empty frame and the rule's declared outputs always exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator  # noqa: E402

from host.atomic import atomic_path  # noqa: E402
from reporting.inputs import BuildData, ModelData, pick  # noqa: E402
from reporting.references import Reference, reference_accuracy  # noqa: E402

DPI = 100
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
    "cifar10": ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
BOTTLENECK_COLOR, LAYER_COLOR = "#d62728", "#4c72b0"


def save_figure(fig, path: str | Path) -> Path:
    """Save as PNG through a temp file + rename (no half-written image), then free the figure."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def placeholder(path: str | Path, title: str, reason: str) -> Path:
    """A small panel that states what is missing and why, instead of an empty plot."""
    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    ax.text(0.01, 0.7, title, fontsize=12, weight="bold", transform=ax.transAxes)
    ax.text(0.01, 0.25, f"not available: {reason}", fontsize=10, color="#555555", transform=ax.transAxes, wrap=True)
    return save_figure(fig, path)


def training_curves(data: ModelData, path: str | Path) -> Path:
    """Loss and accuracy per epoch (train and validation), best epoch and test / published accuracy marked."""
    h = data.history
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(h["epoch"], h["train_loss"], marker=".", label="train")
    ax_loss.plot(h["epoch"], h["val_loss"], marker=".", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(h["epoch"], 100 * h["train_accuracy"], marker=".", label="train")
    ax_acc.plot(h["epoch"], 100 * h["val_accuracy"], marker=".", label="validation")
    test = data.metrics.get("test_accuracy")
    if test is not None:
        ax_acc.axhline(100 * test, color="k", lw=1, ls="--", label=f"test {100 * test:.2f} %")
    ref = reference_accuracy(data.name, data.metrics.get("dataset", ""))
    if ref is not None:
        ax_acc.axhline(ref.accuracy_pct, color="grey", lw=1, ls=":", label=f"published {ref.accuracy_pct:.2f} %")
    best = data.metrics.get("best_epoch")
    for ax in (ax_loss, ax_acc):
        if best is not None:
            ax.axvline(best, color="green", lw=0.8, alpha=0.6, label=f"best epoch {best}" if ax is ax_acc else None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    fig.suptitle(f"{data.name}: training on {data.metrics.get('dataset', 'n/a')}")
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted class."""
    if np.any((y_true < 0) | (y_true >= n_classes) | (y_pred < 0) | (y_pred >= n_classes)):
        raise ValueError(f"class indices outside 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_matrix(data: ModelData, path: str | Path) -> Path:
    """Counts on the test set, coloured by the fraction of each true class (so small classes show too).

    The classes: training's metrics ``num_classes`` (10 where absent) named by its ``class_names`` (a user's
    data set) or the built-in set's names."""
    y_true, y_pred = data.predictions["y_true"].astype(np.int64), data.predictions["y_pred"].astype(np.int64)
    n = int(data.metrics.get("num_classes", 10))
    counts = confusion_counts(y_true, y_pred, n)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = data.metrics.get("class_names") or CLASS_NAMES.get(data.metrics.get("dataset", ""), [str(i) for i in range(n)])
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class")
    accuracy = 100.0 * float(np.trace(counts)) / counts.sum()
    source = str(data.predictions.get("source", "test-set predictions"))
    ax.set_title(f"{data.name}: {accuracy:.2f} % of {counts.sum():,} test images\n({source})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return save_figure(fig, path)


def layer_estimates(build: BuildData, path: str | Path) -> Path:
    """FINN's per-layer estimates as bars: cycles per frame, LUT, BRAM_18K (DSP if any); bottleneck in red."""
    layers = build.layers
    panels = ["cycles", "LUT", "BRAM_18K"] + (["DSP"] if layers["DSP"].fillna(0).gt(0).any() else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.55 * len(layers) + 3), 2.3 * len(panels)), sharex=True)
    colors = [BOTTLENECK_COLOR if name == build.bottleneck else LAYER_COLOR for name in layers.index]
    x = np.arange(len(layers))
    for ax, column in zip(axes, panels):
        values = layers[column].fillna(0).to_numpy()
        ax.bar(x, values, color=colors)
        ax.set_ylabel(column if column != "cycles" else "cycles / frame")
        ax.grid(axis="y", alpha=0.3)
        for xi, v in zip(x, values):
            ax.text(xi, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
        ax.margins(y=0.2)
    axes[-1].set_xticks(x, layers.index, rotation=35, ha="right", fontsize=8)
    est = pick(build.summary, "estimate", {})
    title = f"{build.model} on {build.board}: FINN estimates per layer"
    if build.bottleneck:
        fps = est.get("throughput_fps")
        title += f"\nbottleneck (red): {build.bottleneck}" + (f", {fps:,.0f} frames/s" if fps else "")
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher throughput and accuracy), by throughput."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto(summary: pd.DataFrame, references: list[Reference], path: str | Path) -> Path:
    """Accuracy against estimated throughput for every built model and board, colour = LUT; published points grey."""
    rows = summary.dropna(subset=["est_throughput_fps", "test_accuracy_pct"])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for ref in references:
        ax.scatter(ref.throughput_fps, ref.accuracy_pct, marker="D", facecolors="none", edgecolors="grey", s=50)
        ax.annotate(f"{ref.model} ({ref.source})", (ref.throughput_fps, ref.accuracy_pct), fontsize=7, color="grey",
                    xytext=(0, 7), textcoords="offset points", ha="center")
    if len(rows):
        fps = rows["est_throughput_fps"].astype(float).to_numpy()
        acc = rows["test_accuracy_pct"].astype(float).to_numpy()
        lut = pd.to_numeric(rows["LUT"], errors="coerce").fillna(0).to_numpy()
        markers = dict(zip(sorted(set(rows["board"])), "osv^P*Xh"))
        sc = None
        for board, marker in markers.items():
            sel = (rows["board"] == board).to_numpy()
            sc = ax.scatter(fps[sel], acc[sel], c=lut[sel], cmap="viridis", vmin=0, vmax=max(lut.max(), 1),
                            marker=marker, s=90, edgecolors="k", label=board, zorder=3)
        for i, (f, a, m, b) in enumerate(zip(fps, acc, rows["model"], rows["board"])):
            ax.annotate(f"{m} @ {b}", (f, a), fontsize=8, xytext=(6, 8 if i % 2 == 0 else -14), textcoords="offset points")
        front = pareto_front(list(zip(fps, acc)))
        ax.plot(fps[front], acc[front], color="k", lw=1, ls="--", zorder=2, label="Pareto front (ours)")
        bar = fig.colorbar(sc, ax=ax, label="estimated LUT")
        bar.formatter.set_useOffset(False)
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no model has both a test accuracy and a FINN estimate yet", ha="center",
                transform=ax.transAxes, color="#555555")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.set(xlabel="throughput (frames/s; ours: FINN estimate, grey: published on-board)", ylabel="test accuracy (%)",
           title="accuracy vs throughput vs LUT (up and right is better)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, path)


def _latency_series(validation: dict, side: str) -> tuple[np.ndarray | None, float | None, float | None, str]:
    """(raw samples if stored, p50, p99, kind) of ``accelerator`` or ``reference`` in validation.json."""
    lat = pick(validation, f"{side}.latency", {})
    samples = lat.get("latency_us_samples")
    arr = np.asarray(samples, dtype=float) if samples else None
    return arr, lat.get("latency_us_p50"), lat.get("latency_us_p99"), lat.get("kind", "measured")


def latency(builds: list[BuildData], path: str | Path) -> Path:
    """Batch-1 latency of the accelerator and of the XNOR reference, per model and board, log scale.

    With raw samples in validation.json (``latency_us_samples``) each row is a box plot; with only
    p50/p99 it is a dot at p50 and a bar to p99. FINN estimates (emulation) are hollow and say so.
    """
    rows = [b for b in builds if b.validation]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.9 * max(1, len(rows))))
    y = 0
    ticks, labels = [], []
    for b in rows:
        for side, color in (("accelerator", "#d62728"), ("reference", "#1f77b4")):
            samples, p50, p99, kind = _latency_series(b.validation, side)
            name = "accelerator" if side == "accelerator" else "XNOR reference (CPU)"
            if samples is not None and len(samples):
                ax.boxplot(samples, positions=[y], orientation="horizontal", widths=0.6, showfliers=True,
                           medianprops={"color": color}, boxprops={"color": color}, whiskerprops={"color": color})
            elif p50 is not None:
                hollow = kind == "estimate"
                ax.plot([p50, p99 if p99 is not None else p50], [y, y], color=color, lw=3, alpha=0.5)
                ax.scatter([p50], [y], s=60, color="white" if hollow else color, edgecolors=color, zorder=3)
                if p99 is not None and p99 != p50:
                    ax.scatter([p99], [y], marker="|", s=200, color=color, zorder=3)
            ticks.append(y)
            labels.append(f"{b.model} @ {b.board}: {name}" + (" [FINN estimate]" if kind == "estimate" else ""))
            y += 1
        y += 0.5
    if rows:
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.invert_yaxis()
    ax.set(xlabel="batch-1 latency (us); dot = p50, bar end = p99", title="latency: accelerator vs XNOR reference")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, path)


def _xnor_groups(bench: dict) -> tuple[list[tuple[str, int]], dict[str, dict[tuple[str, int], dict]]]:
    """(model, batch) groups in run order and engine -> group -> row of an xnor.json; the LCE settings
    collapse into one 'best LCE' engine (the fastest setting of each group, named in the row)."""
    rows = bench.get("results") or []
    groups = list(dict.fromkeys((r["model"], r["batch"]) for r in rows))
    by_engine: dict[str, dict[tuple[str, int], dict]] = {}
    for r in rows:
        name = "best LCE" if r["engine"].startswith("lce_") else r["engine"]
        cur = by_engine.setdefault(name, {}).get((r["model"], r["batch"]))
        if cur is None or r["images_per_s"] > cur["images_per_s"]:
            by_engine[name][(r["model"], r["batch"])] = r
    return groups, by_engine


XNOR_ENGINE_STYLE = {"xnor_numba": ("bnnflow XNOR (numba)", "#2ca02c"), "xnor_numpy": ("bnnflow XNOR (numpy, board path)", "#98df8a"),
                     "best LCE": ("Larq Compute Engine (best setting)", "#d62728"), "torch_fp32": ("PyTorch fp32", "#7f7f7f")}


def xnor_speed(bench: dict, path: str | Path) -> Path:
    """Images/s (log scale) of each engine per (model, batch) from results/bench/xnor.json, one thread each."""
    groups, by_engine = _xnor_groups(bench)
    engines = [e for e in XNOR_ENGINE_STYLE if e in by_engine]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(groups) + 2), 4.2))
    width = 0.8 / max(1, len(engines))
    for j, eng in enumerate(engines):
        label, color = XNOR_ENGINE_STYLE[eng]
        xs = [i + (j - (len(engines) - 1) / 2) * width for i, g in enumerate(groups) if g in by_engine[eng]]
        ys = [by_engine[eng][g]["images_per_s"] for g in groups if g in by_engine[eng]]
        ax.bar(xs, ys, width=width, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"{m}\nbatch {b}" for m, b in groups])
    ax.set_ylabel("images / s (one thread)")
    ax.set_title("XNOR reference vs Larq Compute Engine vs PyTorch fp32 (same random networks)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def xnor_roofline(bench: dict, path: str | Path) -> Path:
    """Binary GMAC/s of each engine per (model, batch) against this CPU's binary-MAC ceiling (xnor.json's
    ``binary_mac_ceiling``: popcount width x issue rate x clock); the labels give the fraction of it."""
    groups, by_engine = _xnor_groups(bench)
    ceiling = pick(bench, "binary_mac_ceiling.gmac_per_s")
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(groups) + 2), 4.2))
    for eng, (label, color) in XNOR_ENGINE_STYLE.items():
        if eng not in by_engine:
            continue
        pts = [(i, by_engine[eng][g]) for i, g in enumerate(groups) if g in by_engine[eng]]
        ax.plot([i for i, _ in pts], [r["binary_gmac_per_s"] for _, r in pts], "o", color=color, label=label, ms=7)
        if eng == "xnor_numba" and ceiling:
            for i, r in pts:
                ax.annotate(f"{r['binary_gmac_per_s'] / ceiling:.1%}", (i, r["binary_gmac_per_s"]),
                            textcoords="offset points", xytext=(8, -3), fontsize=8)
    if ceiling:
        unit = pick(bench, "binary_mac_ceiling.instruction", "")
        ax.axhline(ceiling, color="black", ls="--", lw=1)
        ax.text(-0.4, ceiling * 1.1, f"ceiling {ceiling:.0f} GMAC/s ({unit})", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"{m}\nbatch {b}" for m, b in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel("binary GMAC/s (one thread)")
    ax.set_title("Binary MAC rate against the CPU's popcount ceiling")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
