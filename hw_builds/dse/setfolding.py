"""FINN's SetFolding, run as the build runs it, for comparison with the search.

``step_target_fps_parallelization`` (FINN's step: SetFolding for clock / target_fps cycles, with
``mvau_wwidth_max`` and two-pass relaxation) and bnnflow's ``step_repair_auto_folding`` on a copy
of the specialized graph, exactly the build's folding steps; the folding it picks is then
estimated on the estimation graph like any design of the search.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from hw_builds.custom_steps import step_repair_auto_folding
from hw_builds.dse.graph import apply_folding, build_cfg, finn_estimates, read_folding
from hw_builds.finn_env import import_build_steps


def setfolding_design(hw_model, est_model, board: str, clk_period_ns: float, target_fps: int,
                      mvau_wwidth_max: int = 36) -> dict:
    """SetFolding's folding for ``target_fps`` and FINN's estimates of it (finn_estimates' keys + folding)."""
    with tempfile.TemporaryDirectory(prefix="bnnflow_dse_sf_") as tmp:
        cfg = build_cfg(board, Path(tmp), clk_period_ns, target_fps=target_fps, mvau_wwidth_max=mvau_wwidth_max)
        model = import_build_steps().step_target_fps_parallelization(copy.deepcopy(hw_model), cfg)
        model = step_repair_auto_folding(model, cfg)
    folding = read_folding(model)
    est = finn_estimates(apply_folding(est_model, folding), cfg.fpga_part, clk_period_ns)
    return {"target_fps": target_fps, "mvau_wwidth_max": mvau_wwidth_max, "folding": folding, **est}
