"""The local end-to-end run of the CI config, shared by test_pipeline.py and test_slurm.py (run once per session)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import CI_CONFIG, REPO, fresh_workdir, snakemake_env

# The local run adds the Larq twin of the CI model (issue 13); test_slurm.py compares only tfc_w1a1's outputs.
CI_LARQ_CONFIG = CI_CONFIG.with_name("ci_larq.yaml")


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `snakemake all` on the CI config once, locally, in a fresh working directory; the tests read its outputs."""
    workdir = fresh_workdir(tmp_path_factory.mktemp("pipeline"))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(CI_CONFIG), str(CI_LARQ_CONFIG), "--cores", "2", "all"],
        capture_output=True, text=True, env=snakemake_env(),
    )
    (workdir / "snakemake_stdout.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"snakemake all failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return workdir
