"""The build_frontend and compile_finn rules and scripts under Snakemake: a real build, and the start-up refusal of `target: hardware`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _snakemake(tmp_path: Path, finn: dict, target: str, dry_run: bool = False) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's common.smk + frontend.smk + compile_finn.smk (the root Snakefile may lag)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        "from snakemake.utils import validate\n"
        f'configfile: "{REPO}/workflow/config.yaml"\n'
        f'validate(config, "{REPO}/workflow/schemas/config.schema.yaml")\n'
        f'include: "{REPO}/workflow/rules/common.smk"\n'
        f'include: "{REPO}/workflow/rules/frontend.smk"\n'
        f'include: "{REPO}/workflow/rules/compile_finn.smk"\n'
    )
    config = yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())["finn"]
    config.update(finn)
    overrides = tmp_path / "finn.yaml"
    overrides.write_text(yaml.safe_dump({"finn": config}))
    env = {k: v for k, v in os.environ.items() if k not in ("XILINX_VIVADO", "XILINX_HLS")}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path / "wd"),
           "--configfile", str(overrides), "--cores", "1", target] + (["-n"] if dry_run else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_rule_builds_summary(exported_tfc, tmp_path):
    onnx_path, golden = exported_tfc
    export_dir = tmp_path / "wd" / "results" / "tfc_w1a1" / "export"
    export_dir.mkdir(parents=True)
    shutil.copy(onnx_path, export_dir / "model.onnx")
    shutil.copy(golden, export_dir / "golden.npz")
    run = _snakemake(tmp_path, {"verify_samples": 5}, "hw_builds/tfc_w1a1/Ultra96/summary.json")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "wd" / "hw_builds" / "tfc_w1a1" / "Ultra96" / "summary.json").read_text())
    assert summary["board"] == "Ultra96" and summary["golden_samples_checked"] == 5 and summary["fits"]
    assert (tmp_path / "wd" / "logs" / "compile_finn" / "tfc_w1a1" / "Ultra96.log").stat().st_size > 0
    assert (tmp_path / "wd" / "benchmarks" / "compile_finn" / "tfc_w1a1" / "Ultra96.tsv").is_file()
    frontend = json.loads((tmp_path / "wd" / "results" / "tfc_w1a1" / "frontend" / "frontend.json").read_text())
    assert frontend["golden_samples_checked"] == 5 and summary["frontend"]["steps"] == frontend["steps"]
    assert (tmp_path / "wd" / "benchmarks" / "build_frontend" / "tfc_w1a1.tsv").is_file()


def test_rule_fails_loudly(tmp_path):
    """A corrupt model.onnx makes the front end's job (and Snakemake) fail, with the cause in the rule's log."""
    export_dir = tmp_path / "wd" / "results" / "tfc_w1a1" / "export"
    export_dir.mkdir(parents=True)
    (export_dir / "model.onnx").write_bytes(b"garbage")
    import numpy as np

    np.savez(export_dir / "golden.npz", x=np.zeros((1, 1, 28, 28), np.uint8), logits=np.zeros((1, 10), np.float32),
             labels=np.zeros(1, np.int64), indices=np.zeros(1, np.int64))
    run = _snakemake(tmp_path, {}, "hw_builds/tfc_w1a1/Pynq-Z1/summary.json")
    assert run.returncode != 0
    log = (tmp_path / "wd" / "logs" / "build_frontend" / "tfc_w1a1.log").read_text()
    assert "model.onnx: not a readable ONNX model" in log
    # issue 17 case 1: a refused input is the log's last line, exit status 2, no traceback
    last = log.strip().splitlines()[-1]
    assert last.startswith("build_frontend: refused: ") and "model.onnx: not a readable ONNX model (DecodeError" in last
    assert "Traceback" not in log and "exit status 2" in run.stdout + run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "wd" / "hw_builds" / "tfc_w1a1" / "Pynq-Z1" / "summary.json").exists()


def test_hardware_target_refused_at_startup(tmp_path):
    """No job runs (not even a dry run) when target hardware lacks Vivado / Vitis HLS."""
    run = _snakemake(tmp_path, {"target": "hardware"}, "hw_builds/tfc_w1a1/Pynq-Z1/summary.json", dry_run=True)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "MissingXilinxToolsError" in out and "Vitis HLS 2022.2 or 2024.2" in out and "target: emulation" in out
