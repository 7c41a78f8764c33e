"""The one environment is pinned once: environment.yml, requirements.lock and the venv must agree."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# finn-plus is installed with --no-deps after the conda environment (see environment.yml's header).
NOT_IN_CONDA = {"finn-plus"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lines: list[str], source: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"{source}: '{line}' is not an exact name==version pin"
        pins[canonical(match.group(1))] = match.group(3)
    return pins


def lock_pins() -> dict[str, str]:
    return read_pins((REPO / "requirements.lock").read_text().splitlines(), "requirements.lock")


def test_environment_yml_matches_lock() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda_pins = read_pins(pip_section, "environment.yml")
    expected = {k: v for k, v in lock_pins().items() if k not in NOT_IN_CONDA}
    assert conda_pins == expected, "environment.yml and requirements.lock drifted apart"


def test_installed_versions_match_lock() -> None:
    mismatched = {}
    for name, version in lock_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        # local version labels (torch 2.13.0+cpu) satisfy the public pin
        if installed is None or installed.split("+")[0] != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"installed packages differ from requirements.lock (pinned, installed): {mismatched}"
