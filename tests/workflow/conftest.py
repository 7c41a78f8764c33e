"""The local end-to-end run of the CI config, shared by test_pipeline.py and test_slurm.py (run once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import CI_CONFIG, fresh_workdir, snakemake_all

# The local run adds the Larq twin of the CI model (issue 13); test_slurm.py compares only tfc_w1a1's outputs.
CI_LARQ_CONFIG = CI_CONFIG.with_name("ci_larq.yaml")


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `snakemake all` on the CI config once, locally, in a fresh working directory; the tests read its outputs."""
    return snakemake_all(fresh_workdir(tmp_path_factory.mktemp("pipeline")), CI_CONFIG, CI_LARQ_CONFIG)
