"""Config-time refusal of user topologies and data sets (issue 12): `snakemake -n` stops before any job with the
reason (models/topology_spec.py's checks, the data set names, the input a data set can feed). Each check's cases are
unit-tested in tests/models/test_user_topologies.py; here one of each kind, since each dry run takes seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MLP = {"kind": "mlp", "input_shape": [1, 28, 28], "weight_bits": 1, "act_bits": 1, "input_bits": None,
       "hidden": [100, 37]}
DIGITS5 = {"path": "user_data/digits5.npz", "layout": "NHW", "image_shape": [28, 28], "classes": 5}


def dry_run(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(path), "-n", "all"], capture_output=True, text=True)


REFUSED = [
    ("unknown data set", {"data": {"mlp_dataset": "kmnist"}}, "data.mlp_dataset: 'kmnist' is neither a built-in"),
    ("w2a1 topology", {"models": ["mine"], "topologies": {"mine": {**MLP, "weight_bits": 2}}},
     "topology 'mine': w2a1 cannot be mapped (FINN has no HW layer"),
    ("input the data set cannot feed", {"models": ["mine"], "topologies": {"mine": {**MLP, "input_shape": [1, 20, 20]}}},
     "model 'mine' on data set 'mnist': images of shape (1, 28, 28) (as NCHW) cannot feed a model expecting (1, 20, 20)"),
    ("user data set shadows mnist", {"data": {"user_datasets": {"mnist": DIGITS5}}}, "would shadow a built-in"),
]


@pytest.mark.parametrize(("what", "config", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_when_the_config_is_read(tmp_path: Path, what: str, config: dict, reason: str) -> None:
    run = dry_run(tmp_path, config)
    assert run.returncode == 2 and reason in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_user_topology_and_data_set_are_planned(tmp_path: Path) -> None:
    """A user MLP on a user data set, and a built-in TFC on it too: both trained on resources/digits5.npz."""
    (tmp_path / "user_data").mkdir()
    (tmp_path / "user_data" / "digits5.npz").touch()  # a dry run reads no file; tests/models checks the reading
    run = dry_run(tmp_path, {"models": ["mine", "tfc_w1a1"], "topologies": {"mine": {**MLP, "dataset": "digits5"}},
                             "data": {"mlp_dataset": "digits5", "user_datasets": {"digits5": DIGITS5}}})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for job in ("prepare_user_dataset", "train_model", "compile_finn", "verify_xnor", "validate_accelerator"):
        assert job in run.stdout
    assert "results/mine/Pynq-Z1/validation.json" in run.stdout and "resources/digits5.npz" in run.stdout
