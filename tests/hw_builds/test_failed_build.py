"""hw_builds/failed_build.py: a failed build's folder is marked (issue 17 case 12) and the next run clears the mark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw_builds.failed_build import MARKER, failure_marker


def test_a_failed_build_is_marked_and_the_next_run_clears_it(tmp_path: Path) -> None:
    (tmp_path / "golden").mkdir()
    (tmp_path / "intermediate_models").mkdir()
    with pytest.raises(RuntimeError, match="step_x failed"):
        with failure_marker(tmp_path, "compile_finn"):
            raise RuntimeError("step_x failed:\n  detail")
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["stage"] == "compile_finn" and marker["error"] == "RuntimeError: step_x failed: detail"
    assert marker["kept"] == ["golden", "intermediate_models"] and "next run of compile_finn" in marker["cleared_by"]
    with failure_marker(tmp_path, "compile_finn"):
        assert not (tmp_path / MARKER).exists()  # cleared as the next run starts
    assert not (tmp_path / MARKER).exists()
