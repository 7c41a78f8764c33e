"""The design-space search on a real TFC-w1a1 (Brevitas -> QONNX -> FINN): legal, within its bounds, built.

One search of the fixture network for Pynq-Z1 (with SetFolding at two targets) is shared by the tests;
its winning folding goes through compile_finn with every step verified, and FINN's estimate of that
build must be exactly what the search claimed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SF_TARGETS = [100_000, 1_000_000]


@pytest.fixture(scope="module")
def tfc_search(frontend_tfc, tmp_path_factory) -> tuple[dict, Path]:
    from hw_builds.dse.explore import explore

    frontend, _ = frontend_tfc
    out = tmp_path_factory.mktemp("dse")
    result = explore(frontend, "Pynq-Z1", out / "search.json", out / "folding.json", model_name="tfc_w1a1",
                     setfolding_fps=SF_TARGETS, setfolding_wwidth=[36], progress=False)
    return result, out / "folding.json"


def test_search_json_is_what_explore_returned(tfc_search) -> None:
    result, folding = tfc_search
    assert json.loads((folding.parent / "search.json").read_text()) == json.loads(json.dumps(result))


def test_tfc_on_pynq_z1_reaches_its_io_bound(tfc_search) -> None:
    """784 UINT8 pixels per image over FINN's 64-bit Pynq-Z1 IODMA at 100 MHz: 98 cycles, 1,020,408 images/s."""
    result, _ = tfc_search
    io = result["io_bound"]
    assert (io["dma_width_bits"], io["bytes_per_image"], io["cycles_per_image"]) == (64, 784, 98.0)
    best = result["best"]
    assert result["status"] == "fits" and best["bound"] == "io"
    assert best["max_cycles"] <= 98
    assert best["images_per_s"] == pytest.approx(1e8 / 98)


def test_best_design_fits_the_budget_it_claims(tfc_search) -> None:
    result, _ = tfc_search
    budget, used = result["budget"], result["best"]["resources_total"]
    assert budget["LUT"] == int(53_200 * 0.7) and budget["BRAM_18K"] == int(280 * 0.8)
    assert all(used[r] <= budget[r] for r in budget)


def test_fewer_luts_than_setfolding_at_every_target(tfc_search) -> None:
    result, _ = tfc_search
    assert [c["target_fps"] for c in result["setfolding_comparison"]] == SF_TARGETS
    for c in result["setfolding_comparison"]:
        assert c["search"]["max_cycles"] <= c["setfolding"]["max_cycles"]
        assert c["search"]["resources_total"]["LUT"] <= c["setfolding"]["resources_total"]["LUT"]
        assert c["search_within_setfolding_bram_uram_dsp"]  # the LUT saved is not paid for in BRAM or DSP
        assert all(c["search"]["resources_total"][r] <= c["setfolding"]["resources_total"][r] for r in ("BRAM_18K", "URAM", "DSP"))
    at_best = result["setfolding_at_best"][0]
    assert at_best["resources_total"]["LUT"] > result["best"]["resources_total"]["LUT"] or \
        at_best["throughput_fps"] < result["best"]["fabric_images_per_s"]


def test_setfolding_replica_matches_the_real_build(tfc_search, pynq_z1_build) -> None:
    """The comparison's SetFolding is the build's: same folding and estimate as compile_finn at target_fps 100,000."""
    result, _ = tfc_search
    _, summary = pynq_z1_build
    sf = next(c for c in result["setfolding_comparison"] if c["target_fps"] == 100_000)["setfolding"]
    assert sf["max_cycles"] == summary["estimate"]["max_cycles_per_frame"]
    assert sf["resources_total"] == summary["resources_total"]
    for layer, attrs in sf["folding"].items():
        for attr in ("PE", "SIMD"):
            if attr in attrs:
                assert summary["folding"][layer][attr] == attrs[attr], (layer, attr)


def test_every_option_is_legal_for_finn(frontend_tfc) -> None:
    """The options obey FINN's rules: PE divides MH, SIMD divides MW (MVAU), Reshape PE divides the row."""
    from qonnx.custom_op.registry import getCustomOp

    from hw_builds.dse.graph import estimation_graph, specialized_graph
    from hw_builds.dse.space import layer_options

    frontend, _ = frontend_tfc
    est = estimation_graph(specialized_graph(frontend, "Pynq-Z1"), "Pynq-Z1")
    options = layer_options(est, "xc7z020clg400-1")
    nodes = {n.name: getCustomOp(n) for n in est.graph.node}
    for name, opts in options.items():
        inst = nodes[name]
        assert opts, name
        for o in opts:
            if "MH" in inst.get_nodeattr_types():
                assert inst.get_nodeattr("MH") % o.attrs["PE"] == 0
                assert inst.get_nodeattr("MW") % o.attrs["SIMD"] == 0
            if name.startswith("Reshape"):
                assert 28 % o.attrs["PE"] == 0


def test_chosen_folding_builds_and_finn_agrees(tfc_search, frontend_tfc, tmp_path) -> None:
    """The winning folding is legal for FINN: compile_finn verifies every step, and FINN's estimate of the
    build (cycles, LUT, BRAM_18K, URAM, DSP) is exactly the search's claim."""
    from hw_builds.compile import compile_finn
    from reporting.dse import _check_build

    result, folding = tfc_search
    frontend, golden = frontend_tfc
    summary = compile_finn(frontend, golden, tmp_path / "build", "Pynq-Z1", model_name="tfc_w1a1",
                           target_fps=None, folding_config=folding, progress=False)
    assert summary["fits"] and "step_generate_estimate_reports" in summary["verified_steps"]
    _check_build(result, summary, tmp_path)  # raises on any difference
    assert summary["estimate"]["throughput_fps"] == pytest.approx(result["best"]["fabric_images_per_s"])


def test_host_thresholded_alternative_moves_the_io_bound(tfc_search) -> None:
    """With the host thresholding and packing, 98 bytes per image cross the DMA instead of 784."""
    result, _ = tfc_search
    alt = result["host_thresholded"]
    assert alt["moved_to_host"] == ["Reshape_rtl_0", "Thresholding_rtl_0"]
    assert alt["io_bound"]["bytes_per_image"] == 98
    assert alt["best"]["images_per_s"] > result["best"]["images_per_s"]
    assert alt["host_must_sustain"]["pixels_thresholded_per_s"] == pytest.approx(784 * alt["best"]["images_per_s"])


def test_board_too_small_is_reported_not_raised(frontend_tfc, tmp_path) -> None:
    from hw_builds.dse.explore import explore

    frontend, _ = frontend_tfc
    result = explore(frontend, "Pynq-Z1", tmp_path / "s.json", tmp_path / "f.json", fabric_limits={"LUT": 0.01},
                     progress=False)
    assert result["status"] == "does_not_fit" and "LUT" in result["reason"]
    assert result["smallest_design"]["resources_total"]["LUT"] > result["budget"]["LUT"]
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "does_not_fit"


def test_search_without_a_front_end_is_refused(tmp_path) -> None:
    """The search starts from the front end's graph: a folder without its record is named, nothing written."""
    from hw_builds.dse.explore import explore
    from hw_builds.frontend import FrontendError

    with pytest.raises(FrontendError, match=rf"{tmp_path / 'frontend' / 'frontend.json'}: front-end record not found"):
        explore(tmp_path / "frontend", "Pynq-Z1", tmp_path / "s.json", tmp_path / "f.json", progress=False)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "f.json").exists()


def test_bad_fabric_limit_is_refused() -> None:
    from hw_builds.dse.bounds import fabric_budget

    with pytest.raises(ValueError, match="LUT=1.5"):
        fabric_budget("Pynq-Z1", {"LUT": 1.5})


def test_summary_table_plots_and_page(tfc_search, tmp_path) -> None:
    import csv

    from reporting.dse import summarize

    result, folding = tfc_search
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"model": "tfc_w1a1", "test_accuracy": 0.9467}))
    out = {k: tmp_path / f"{k}" for k in ("csv", "json", "pareto", "setfolding", "table", "html")}
    rows = summarize([folding.parent / "search.json"], [], [metrics], out["csv"], out["json"], out["pareto"],
                     out["setfolding"], out["table"], html_path=out["html"])
    table = list(csv.DictReader(out["csv"].open()))
    assert len(rows) == len(table) == 1 and table[0]["bound"] == "io" and table[0]["built"] == "False"
    assert float(table[0]["test_accuracy_pct"]) == pytest.approx(94.67)
    assert len(list(csv.DictReader(out["table"].open()))) == len(SF_TARGETS)
    for png in (out["pareto"], out["setfolding"]):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["html"].read_text().count("data:image/png;base64,") == 2


def test_pareto_front_keeps_only_unbeaten_points() -> None:
    from reporting.dse import pareto_front

    pts = [(1e5, 95.0), (1e6, 94.0), (5e5, 93.0), (1e6, 92.0), (2e4, 96.0)]
    assert pareto_front(pts) == [(2e4, 96.0), (1e5, 95.0), (1e6, 94.0)]
