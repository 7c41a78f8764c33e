"""One model x board of the design-space exploration: search, bounds, SetFolding comparison, JSON.

It starts from the model's FINN front end (results/<model>/frontend/, the build_frontend rule), as every
per-board build does.

    python -m hw_builds.dse.explore results/tfc_w1a1/frontend Pynq-Z1 out/search.json out/folding.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from host.atomic import write_json_atomic
from host.refusal import EXIT_REFUSED, RefusedInput, one_line
from hw_builds.boards import get_board
from hw_builds.dse.bounds import fabric_budget, finn_resource_limits, host_thresholded, io_bound
from hw_builds.dse.graph import apply_folding, estimation_graph, finn_estimates, specialized_graph
from hw_builds.dse.search import Selection, binding_bound, cheapest, fastest, unconstrained_minimum
from hw_builds.dse.setfolding import setfolding_design
from hw_builds.dse.space import COST_RESOURCES, layer_options, refuse_convolutions
from hw_builds.execute import FinnExecutionError, load_model
from hw_builds.frontend import load_frontend

FORMAT_VERSION = 1


class EstimateMismatchError(RuntimeError):
    """The search's summed per-layer cost differs from FINN's estimate of the assembled design."""


def _design(sel: Selection, est_model, fpgapart: str, clk_period_ns: float, io) -> dict:
    """FINN's estimates of a selection (re-estimated on the assembled graph, checked against the sum)."""
    est = finn_estimates(apply_folding(est_model, sel.folding()), fpgapart, clk_period_ns)
    claimed = sel.resources()
    if any(abs(est["resources_total"][r] - claimed[r]) > 1e-6 for r in COST_RESOURCES) or est["max_cycles"] != sel.max_cycles:
        raise EstimateMismatchError(f"search claimed {claimed} at {sel.max_cycles} cycles, FINN estimates "
                                    f"{est['resources_total']} at {est['max_cycles']}")
    fabric_fps = est["throughput_fps"]
    return {
        "folding": sel.folding(),
        "fabric_images_per_s": fabric_fps,
        "images_per_s": min(fabric_fps, io.fps),  # what the board can sustain: the slower of fabric and DMA
        **{k: est[k] for k in ("max_cycles", "bottleneck_layer", "resources_total", "resources_per_layer", "cycles_per_layer")},
    }


def _cheapest_beside(options, sf: dict) -> tuple[Selection, bool]:
    """The fewest-LUT design at SetFolding's cycles per image that uses no more BRAM_18K, URAM and DSP than
    SetFolding's (LUT is compared, so it must not be bought with DSPs or BRAM that SetFolding left free);
    (selection, True), or the fewest-LUT design at any fabric and False if no option set stays within them."""
    others = {r: sf["resources_total"][r] + 1e-6 for r in COST_RESOURCES if r != "LUT"}
    within = cheapest(options, sf["max_cycles"], others)
    return (within, True) if within is not None else (cheapest(options, sf["max_cycles"]), False)


def _search_with_io(options, model, budget, board, clk_period_ns):
    """The fastest design and its I/O bound; the bound depends on the first layer's folding, so iterate."""
    from hw_builds.dse.graph import apply_folding as fold

    io = io_bound(model, board, clk_period_ns)
    for _ in range(4):
        sel, t = fastest(options, budget, io.cycles_per_image)
        if sel is None:
            return None, None, io
        io_new = io_bound(fold(model, sel.folding()), board, clk_period_ns)
        if io_new == io:
            return sel, t, io
        io = io_new
    return sel, t, io


def explore(frontend_dir: str | Path, board: str, out_json: str | Path, folding_json: str | Path,
            model_name: str = "", clk_period_ns: float = 10.0, fabric_limits: dict | None = None,
            setfolding_fps: list[int] = (), setfolding_wwidth: list[int] = (36,), progress: bool = True) -> dict:
    """Search the fastest design of the front end in ``frontend_dir`` (hw_builds.frontend) within ``board``'s
    bounds; write search.json and the folding.

    search.json: status ("fits" | "does_not_fit"), the budget and its source, the I/O bound, the best
    design (folding, FINN's estimated images/s, LUT/BRAM/..., the bound it hits), the host-thresholded
    alternative, and SetFolding at each of ``setfolding_fps`` next to the search at the same throughput.
    A board too small for any folding gives status "does_not_fit" and the smallest design's cost.
    Raises FrontendError for a missing or altered front end and UnsupportedGraphError for a convolutional
    network, before anything is written.
    """
    from rich.progress import Progress

    t0 = time.perf_counter()
    _, hw_path = load_frontend(frontend_dir)  # FrontendError for a missing or altered front end
    refuse_convolutions(load_model(hw_path), hw_path)  # a CNV is refused before anything is written
    spec = get_board(board)
    budget = fabric_budget(board, fabric_limits)
    limits = {**finn_resource_limits(), **(fabric_limits or {})}
    jobs = ["specialized graph", "estimation graph", "layer options", "search", "host alternative"]
    jobs += [f"SetFolding {fps:,} (wwidth {w})" for fps in setfolding_fps for w in setfolding_wwidth]
    result: dict = {"format_version": FORMAT_VERSION, "model": model_name or Path(frontend_dir).resolve().parent.name,
                    "board": board, "fpga_part": spec.part, "clk_period_ns": clk_period_ns,
                    "budget": budget, "budget_fractions": {r: limits[r] for r in COST_RESOURCES},
                    "budget_source": "board capacity (hw_builds/boards.py) x finn.util.platforms.DEFAULT_RES_LIMITS "
                                     "unless configured; the rest is room for IODMA, interconnect, FIFOs and DWCs",
                    "capacity": {r: spec.capacity()[r] for r in COST_RESOURCES}}
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"DSE {result['model']} -> {board}", total=len(jobs))

        def step(i):
            bar.update(task, completed=i, description=f"{result['model']} {board}: {jobs[i]}")

        step(0)
        hw = specialized_graph(frontend_dir, board, clk_period_ns)
        step(1)
        est = estimation_graph(hw, board, clk_period_ns)
        step(2)
        options = layer_options(est, spec.part)
        result["options_per_layer"] = {k: len(v) for k, v in options.items()}
        step(3)
        sel, t, io = _search_with_io(options, est, budget, board, clk_period_ns)
        result["io_bound"] = io.as_dict()
        if sel is None:
            smallest = unconstrained_minimum(options)
            result["status"] = "does_not_fit"
            result["reason"] = (f"the smallest folding needs {smallest.resources()}, over the budget {budget} "
                                f"of {board}")
            result["smallest_design"] = _design(smallest, est, spec.part, clk_period_ns, io)
            best_folding = smallest.folding()
        else:
            result["status"] = "fits"
            best = _design(sel, est, spec.part, clk_period_ns, io)
            best.update(binding_bound(options, budget, t, io.cycles_per_image))
            result["best"] = best
            best_folding = sel.folding()
        step(4)
        host_graph, removed = host_thresholded(est)
        if host_graph is not None:
            h_opts = {k: v for k, v in options.items() if k not in removed}
            h_sel, h_t, h_io = _search_with_io(h_opts, host_graph, budget, board, clk_period_ns)
            alt = {"moved_to_host": removed, "io_bound": h_io.as_dict()}
            if h_sel is not None:
                alt["best"] = {**_design(h_sel, host_graph, spec.part, clk_period_ns, h_io),
                               **binding_bound(h_opts, budget, h_t, h_io.cycles_per_image)}
                fps = alt["best"]["images_per_s"]
                pixels = int(est.get_tensor_shape(est.graph.input[0].name)[-1] * est.get_tensor_shape(est.graph.input[0].name)[-2])
                alt["host_must_sustain"] = {"images_per_s": fps, "pixels_thresholded_per_s": fps * pixels,
                                            "packed_bytes_written_per_s": fps * h_io.bytes_per_image}
            result["host_thresholded"] = alt
        comparisons = []
        i = 5
        for fps in setfolding_fps:
            for wwidth in setfolding_wwidth:
                step(i)
                i += 1
                sf = setfolding_design(hw, est, board, clk_period_ns, int(fps), wwidth)
                ours, within = _cheapest_beside(options, sf)
                ours_d = _design(ours, est, spec.part, clk_period_ns, io)
                comparisons.append({
                    "target_fps": int(fps), "mvau_wwidth_max": wwidth,
                    "setfolding": {k: sf[k] for k in ("throughput_fps", "max_cycles", "resources_total", "folding")},
                    "search": {"throughput_fps": ours_d["fabric_images_per_s"], "max_cycles": ours_d["max_cycles"],
                               "resources_total": ours_d["resources_total"], "folding": ours_d["folding"]},
                    "setfolding_fits_budget": all(sf["resources_total"][r] <= budget[r] for r in COST_RESOURCES),
                    "search_within_setfolding_bram_uram_dsp": within,
                })
        result["setfolding_comparison"] = comparisons
        if result["status"] == "fits":
            # SetFolding asked for the search's throughput: what FINN's own folding needs for it
            target = int(result["best"]["fabric_images_per_s"])
            result["setfolding_at_best"] = []
            for wwidth in setfolding_wwidth:
                sf = setfolding_design(hw, est, board, clk_period_ns, target, wwidth)
                result["setfolding_at_best"].append({k: sf[k] for k in ("target_fps", "mvau_wwidth_max", "throughput_fps",
                                                                         "max_cycles", "resources_total")})
        bar.update(task, completed=len(jobs))
    result["seconds"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(Path(folding_json), best_folding)
    write_json_atomic(Path(out_json), result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frontend_dir", help="the model's front-end folder (results/<model>/frontend)")
    parser.add_argument("board")
    parser.add_argument("out_json")
    parser.add_argument("folding_json")
    parser.add_argument("--clk-period-ns", type=float, default=10.0)
    parser.add_argument("--setfolding-fps", type=int, nargs="*", default=[])
    args = parser.parse_args(argv)
    try:
        r = explore(args.frontend_dir, args.board, args.out_json, args.folding_json, clk_period_ns=args.clk_period_ns,
                    setfolding_fps=args.setfolding_fps)
    except (RefusedInput, FinnExecutionError) as err:  # refused input (host.refusal): one line, exit code 2
        print(f"error: {one_line(err, 2000)}", file=sys.stderr)
        return EXIT_REFUSED
    best = r.get("best") or {}
    print(r["status"], best.get("images_per_s"), best.get("resources_total"), best.get("bound"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
