"""The graph the search estimates on: FINN's HW graph as the build will have it at its estimate step.

The search starts from the model's FINN front end (``hw_builds.frontend``: QONNX -> streamlined
HW-layer graph, built once per model by the build_frontend rule and shared with the XNOR export and
every per-board build), so streamlining and conversion to HW layers never run per search. From its
``hw.onnx`` the board steps up to ``step_specialize_layers`` (``hw_builds.build_config.board_step_names``
in the build's own order: top-1 head, accumulator record and mend, partition, specialization) give the
specialized HW graph, which does not depend on the folding. The build then folds it and runs its
folding-independent steps (``step_minimize_bit_width`` and whatever the step list adds there) before
FINN estimates; ``estimation_graph`` runs exactly those steps, so a folding applied to its result is
estimated on the graph the build estimates (a test compares the two on real builds).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path

from hw_builds.build_config import BuildSettings, board_step_names, dataflow_config
from hw_builds.custom_steps import custom_steps
from hw_builds.execute import load_model
from hw_builds.finn_env import import_build_steps
from hw_builds.frontend import load_frontend

SPECIALIZE_STEP = "step_specialize_layers"
ESTIMATE_STEP = "step_generate_estimate_reports"
# Steps that choose or check the folding; the search replaces them by its own folding.
FOLDING_STEPS = frozenset({
    "step_target_fps_parallelization",
    "step_repair_auto_folding",
    "step_check_folding_config",
    "step_apply_folding_config",
    "step_check_folding",
})
# The attributes a design sets per layer (FINN's folding-config names).
FOLDING_ATTRS = ("PE", "SIMD", "ram_style", "resType", "mem_mode")


def build_cfg(board: str, output_dir: Path, clk_period_ns: float = 10.0, target_fps: int | None = 100_000,
              mvau_wwidth_max: int = 36):
    """FINN's DataflowBuildConfig as compile_finn makes it (emulation target) for ``board``."""
    settings = BuildSettings(board=board, clk_period_ns=clk_period_ns, target_fps=target_fps,
                             mvau_wwidth_max=mvau_wwidth_max)
    Path(output_dir, "intermediate_models").mkdir(parents=True, exist_ok=True)
    Path(output_dir, "report").mkdir(parents=True, exist_ok=True)
    return dataflow_config(settings, Path(output_dir))


def _run_steps(model, cfg, names: list[str]):
    finn_steps = import_build_steps().build_dataflow_step_lookup
    ours = custom_steps(fail_if_not_fits=False)
    for name in names:
        model = (ours.get(name) or finn_steps[name])(model, cfg)
    return model


def specialize_steps() -> list[str]:
    """The build's board steps from the front end's HW graph up to and including specialization."""
    names = board_step_names("emulation")
    return names[: names.index(SPECIALIZE_STEP) + 1]


def post_folding_steps() -> list[str]:
    """The build's steps between specialization and FINN's estimate, less the folding steps."""
    names = board_step_names("emulation")
    between = names[names.index(SPECIALIZE_STEP) + 1: names.index(ESTIMATE_STEP)]
    return [n for n in between if n not in FOLDING_STEPS]


def specialized_graph(frontend_dir: str | Path, board: str, clk_period_ns: float = 10.0, work_dir: Path | None = None):
    """The specialized HW graph for ``board`` (FINN's ModelWrapper, PE = SIMD = 1) from the front end in ``frontend_dir``.

    Raises hw_builds.frontend.FrontendError for a missing or altered front end (its record or ``hw.onnx``).
    """
    _, hw_path = load_frontend(frontend_dir)
    with tempfile.TemporaryDirectory(prefix="bnnflow_dse_") as tmp:
        cfg = build_cfg(board, Path(work_dir or tmp), clk_period_ns)
        return _run_steps(load_model(hw_path), cfg, specialize_steps())


def estimation_graph(hw_model, board: str, clk_period_ns: float = 10.0):
    """A copy of the specialized ``hw_model`` after the build's folding-independent steps."""
    with tempfile.TemporaryDirectory(prefix="bnnflow_dse_") as tmp:
        cfg = build_cfg(board, Path(tmp), clk_period_ns)
        return _run_steps(copy.deepcopy(hw_model), cfg, post_folding_steps())


def hw_nodes(model) -> list:
    """The graph's FINN HW layers (HLS or RTL), in graph order."""
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    return [n for n in model.graph.node if is_hls_node(n) or is_rtl_node(n)]


def apply_folding(model, folding: Mapping[str, Mapping[str, object]]):
    """A copy of ``model`` with each named layer's attributes set (FINN's folding-config format)."""
    from qonnx.custom_op.registry import getCustomOp

    out = copy.deepcopy(model)
    nodes = {n.name: n for n in out.graph.node}
    for layer, attrs in folding.items():
        if layer == "Defaults":
            continue
        inst = getCustomOp(nodes[layer])
        for attr, value in attrs.items():
            inst.set_nodeattr(attr, value)
    return out


def read_folding(model) -> dict[str, dict[str, object]]:
    """Each HW layer's folding attributes (those it has), FINN's folding-config format."""
    from qonnx.custom_op.registry import getCustomOp

    folding = {}
    for node in hw_nodes(model):
        inst = getCustomOp(node)
        types = inst.get_nodeattr_types()
        folding[node.name] = {a: inst.get_nodeattr(a) for a in FOLDING_ATTRS if a in types}
    return folding


def finn_estimates(model, fpgapart: str, clk_period_ns: float) -> dict:
    """FINN's own analysis passes on ``model``: per-layer cycles and resources, totals, fps.

    Exactly what step_generate_estimate_reports writes (exp_cycles_per_layer, res_estimation);
    throughput is FINN's estimated_throughput_fps = clock / the slowest layer's cycles.
    """
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    cycles = model.analysis(exp_cycles_per_layer)
    layers = model.analysis(lambda m: res_estimation(m, fpgapart))
    total = {r: float(sum(float(v.get(r, 0)) for v in layers.values())) for r in ("LUT", "BRAM_18K", "URAM", "DSP")}
    max_cycles = max(cycles.values())
    return {
        "cycles_per_layer": {k: int(v) for k, v in cycles.items()},
        "resources_per_layer": {k: {r: float(v.get(r, 0)) for r in total} for k, v in layers.items()},
        "resources_total": total,
        "max_cycles": int(max_cycles),
        "bottleneck_layer": max(cycles, key=cycles.get),
        "throughput_fps": 1e9 / (clk_period_ns * max_cycles),
    }
