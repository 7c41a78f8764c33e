"""The Larq environment is pinned once: requirements-larq.lock, workflow/envs/larq.yml and the venv agree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
    # A fresh interpreter: other tests of this session (the LCE benchmark's) import host/ to compute the reference.
    probe = (
        "import os, sys\n"
        "import larq_models.__main__, larq_models.convert, larq_models.export, larq_models.train, larq_models.bench_lce\n"
        "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
        "print(sorted({n.split('.')[0] for n in sys.modules}"
        " & {'torch', 'brevitas', 'finn', 'qonnx', 'host', 'models', 'hw_builds'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    for path in (REPO / "larq_models").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (torch|brevitas|finn|qonnx|host|models|hw_builds)\b", text, re.M), path
