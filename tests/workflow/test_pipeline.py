"""End-to-end: `snakemake all` on the CI config runs every stage this machine can run, then its outputs are checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = Path(__file__).with_name("ci_config.yaml")

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `snakemake all` once in a fresh working directory; every test below reads its outputs."""
    workdir = tmp_path_factory.mktemp("pipeline")
    wheel_dir = REPO / "resources" / "downloads"
    if wheel_dir.is_dir():  # reuse the checked wheel instead of downloading it again
        shutil.copytree(wheel_dir, workdir / "resources" / "downloads")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(CI_CONFIG), "--cores", "2", "all"],
        capture_output=True, text=True, env=env,
    )
    (workdir / "snakemake_stdout.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"snakemake all failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return workdir


def merged_config() -> dict:
    config = yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())
    for key, value in yaml.safe_load(CI_CONFIG.read_text()).items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def test_data_stage(pipeline_run: Path) -> None:
    with np.load(pipeline_run / "resources" / "mnist.npz") as npz:
        assert npz["x_train"].shape == (60000, 28, 28)
        assert np.bincount(npz["y_test"]).tolist()[:3] == [980, 1135, 1032]


def test_every_rule_wrote_a_log(pipeline_run: Path) -> None:
    logs = list((pipeline_run / "logs").rglob("*.log"))
    assert logs, "no rule logs written"
