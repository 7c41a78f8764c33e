"""The figures: counting and Pareto logic against brute force, every PNG written and not blank."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixtures import write_tree

from reporting import plots
from reporting.inputs import discover, load_inputs
from reporting.references import throughput_references
from reporting.summary import summary_frame

MODELS, BOARDS = ["tfc_w1a1", "sfc_w1a1"], ["Pynq-Z1", "ZCU104"]


def assert_not_blank(path: Path) -> np.ndarray:
    """The PNG decodes and has more than one colour: something was drawn."""
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50, pixels.shape
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.01, f"{path} is uniform"
    return pixels


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=200))
def test_confusion_counts_match_a_loop(pairs: list[tuple[int, int]]) -> None:
    y_true, y_pred = (np.array(v, dtype=np.int64) for v in zip(*pairs))
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in pairs:
        expected[t, p] += 1
    counts = plots.confusion_counts(y_true, y_pred)
    np.testing.assert_array_equal(counts, expected)
    assert np.trace(counts) == int((y_true == y_pred).sum())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=12))
def test_pareto_front_is_the_non_dominated_set(points: list[tuple[int, int]]) -> None:
    front = plots.pareto_front(points)
    for i, (x, y) in enumerate(points):
        beaten = any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)
        assert (i in front) == (not beaten)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)


def test_every_plot_draws_something(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    inputs = load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)
    out = tmp_path / "plots"
    data = inputs.model_data["tfc_w1a1"]
    builds = list(inputs.builds.values())
    paths = [
        plots.training_curves(data, out / "curves.png"),
        plots.confusion_matrix(data, out / "confusion.png"),
        plots.layer_estimates(inputs.builds[("tfc_w1a1", "Pynq-Z1")], out / "layers.png"),
        plots.pareto(summary_frame(inputs), throughput_references(), out / "pareto.png"),
        plots.latency(builds, out / "latency.png"),
        plots.placeholder(out / "none.png", "latency", "no validation.json in this run"),
    ]
    for path in paths:
        assert_not_blank(path)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_bottleneck_bar_is_red(tmp_path: Path) -> None:
    """The bottleneck layer's bar is drawn in the bottleneck colour, and only that one."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    write_tree(tmp_path, ["tfc_w1a1"], ["Pynq-Z1"])
    build = load_inputs(discover(tmp_path, ["tfc_w1a1"], ["Pynq-Z1"]), ["tfc_w1a1"], ["Pynq-Z1"]).builds[("tfc_w1a1", "Pynq-Z1")]
    captured = {}
    original = plots.save_figure

    def keep(fig, path):
        captured["fig"] = fig
        captured["colors"] = [mcolors.to_hex(p.get_facecolor()) for p in fig.axes[0].patches]
        return original(fig, path)

    plots.save_figure = keep
    try:
        plots.layer_estimates(build, tmp_path / "layers.png")
    finally:
        plots.save_figure = original
    names = list(build.layers.index)
    red = [names[i] for i, c in enumerate(captured["colors"]) if c == plots.BOTTLENECK_COLOR]
    assert red == ["MVAU_hls_0"]
    plt.close("all")


def test_xnor_bench_plots_collapse_lce_settings_to_the_best(tmp_path: Path) -> None:
    """xnor.json rows (hw_builds/xnor_bench.py layout, trimmed): bnnflow, PyTorch and two LCE settings per group."""
    rows = []
    for model, batch in (("tfc", 1), ("cnv", 1000)):
        for engine, ips in (("xnor_numba", 9e4), ("xnor_numpy", 2e4), ("torch_fp32", 1e4), ("lce_default", 3e4),
                            ("lce_indirect_bgemm", 5e4)):
            rows.append({"model": model, "batch": batch, "engine": engine, "images_per_s": ips,
                         "binary_gmac_per_s": ips * 1e-4})
    bench = {"results": rows, "binary_mac_ceiling": {"gmac_per_s": 600.0, "instruction": "POPCNT r64"}}
    groups, by_engine = plots._xnor_groups(bench)
    assert groups == [("tfc", 1), ("cnv", 1000)]
    assert set(by_engine) == {"xnor_numba", "xnor_numpy", "torch_fp32", "best LCE"}
    assert by_engine["best LCE"][("cnv", 1000)]["engine"] == "lce_indirect_bgemm"
    assert_not_blank(plots.xnor_speed(bench, tmp_path / "speed.png"))
    assert_not_blank(plots.xnor_roofline(bench, tmp_path / "roof.png"))
