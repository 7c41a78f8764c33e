"""The Larq environment is pinned once: requirements-larq.lock, workflow/envs/larq.yml and the venv agree."""

from __future__ import annotations

import os
import re
from importlib.metadata import distributions
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.larq_env
REPO = Path(__file__).resolve().parents[2]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements-larq.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_canon(name)] = version
    return pins


def test_conda_env_matches_lock() -> None:
    env = yaml.safe_load((REPO / "workflow" / "envs" / "larq.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {_canon(p.split("==")[0]): p.split("==")[1] for p in pip} == lock_pins()


def test_installed_versions_match_lock() -> None:
    installed = {_canon(d.metadata["Name"]): d.version for d in distributions()}
    pins = lock_pins()
    assert {k: installed.get(k) for k in pins} == pins
    assert pins["numpy"].startswith("1.") and pins["larq"] == "0.14.0" and pins["tensorflow"] == "2.16.1"


def test_larq_world_imports_no_other_world() -> None:
    """larq_models imports neither torch, FINN / qonnx, nor host/ (the board world), and runs on legacy Keras."""
    import sys

    import larq_models.__main__  # noqa: F401
    import larq_models.convert  # noqa: F401
    import larq_models.export  # noqa: F401
    import larq_models.train  # noqa: F401

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    loaded = {name.split(".")[0] for name in sys.modules}
    assert not loaded & {"torch", "brevitas", "finn", "qonnx", "host", "models", "hw_builds"}
    for path in (REPO / "larq_models").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (torch|brevitas|finn|qonnx|host|models|hw_builds)\b", text, re.M), path
