"""`python3 -m host validate` of a real deployment package inside the ARM root file systems, from the package alone.

On x86-64 the module fixture runs the real chain (as tests/hw_builds/test_emulation.py does): the tiny
trained tfc_w1a1, QONNX export, the FINN front end, the FINN emulation build, the XNOR export and the
deployment package, then records the emulated accelerator's packed answers to every test image (host/replay.py). Only the
package folder and the recording are copied into the ARM root; there, the package's own host/ checks
the manifest, packs the 300 real MNIST test images (the bytes must be the recorded ones) and runs the
XNOR reference on the ARM CPU, which must agree with FINN's accelerator on every image. A changed
recorded answer must fail (exit 1) and a changed package file must be refused (exit 2), there too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from qemu_rootfs import ARCHES, run_in_rootfs, workdir_in

from host.package import load_package, package_from_build
from host.replay import record_replay
from host.validate import validate_package

pytestmark = pytest.mark.board_cpu

CONFIG = {"batch_size": 32, "latency_repeats": 10, "enforce_budgets": True,
          "budgets": {"accuracy_min_pct": 10.0, "latency_max_ms": 50.0, "power_max_mw": 100.0}}


@pytest.fixture(scope="module")
def package(small_mnist: Path, trained_tfc: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from hw_builds.compile import compile_finn
    from hw_builds.emulation import EmulatedAccelerator
    from hw_builds.frontend import build_frontend
    from hw_builds.xnor_export import export_xnor
    from models.export_stage import export_stage

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("board_cpu_package")
    export_stage(trained_tfc / "checkpoint.pt", small_mnist, tmp / "export", n_golden=20)
    build_frontend(tmp / "export" / "model.onnx", tmp / "export" / "golden.npz", tmp / "frontend", "tfc_w1a1",
                   verify_samples=5, progress=False)
    build_dir = tmp / "hw_builds" / "tfc_w1a1" / "Pynq-Z1"
    compile_finn(tmp / "frontend", tmp / "export" / "golden.npz", build_dir, "Pynq-Z1",
                 model_name="tfc_w1a1", verify_samples=5, progress=False)
    xnor = tmp / "xnor" / "xnor_model.npz"
    export_xnor(tmp / "frontend", xnor, "tfc_w1a1")
    deploy = package_from_build(build_dir, xnor, small_mnist, build_dir / "deploy", test_subset=None,
                                validate_config=CONFIG)
    pkg = load_package(deploy)
    acc = EmulatedAccelerator.from_package(pkg)
    try:
        record_replay(pkg, acc, tmp / "replay.npz")
    finally:
        acc.close()
    x86 = validate_package(deploy, "replay", tmp / "x86.json", replay=tmp / "replay.npz")
    assert x86["agreement"]["exact"] and x86["cpu"]["machine"] == "x86_64"
    return {"deploy": deploy, "replay": tmp / "replay.npz", "x86": x86}


def _validate(root: Path, inside: str, replay: str) -> tuple[int, str]:
    """`python3 -m host validate --backend replay` in the package folder inside the root: (exit status, stderr)."""
    res = run_in_rootfs(root, ["python3", "-m", "host", "validate", "--package", ".", "--backend", "replay",
                               "--replay", replay, "--out", "validation.json"], cwd=f"{inside}/package", timeout=900)
    return res.returncode, res.stderr


def test_validate_on_arm_from_the_package_alone(board_root: tuple[str, Path], package: dict) -> None:
    arch_name, root = board_root
    with workdir_in(root) as (outside, inside):
        shutil.copytree(package["deploy"], outside / "package")
        shutil.copy2(package["replay"], outside / "replay.npz")
        rc, err = _validate(root, inside, "../replay.npz")
        assert rc == 0, f"{arch_name}: host validate exited {rc}:\n{err[-3000:]}"
        report = json.loads((outside / "package" / "validation.json").read_text())

        # a recorded accelerator answer changed: the ARM reference must catch it (exit 1, image named)
        with np.load(outside / "replay.npz") as z:
            recording = {k: z[k] for k in z.files}
        recording["outputs"] = recording["outputs"].copy()
        recording["outputs"].flat[5] ^= 1
        with open(outside / "changed.npz", "wb") as f:
            np.savez(f, **recording)
        rc_changed, err_changed = _validate(root, inside, "../changed.npz")

        # a package file changed after packaging: refused by the manifest check before anything loads
        with open(outside / "package" / "xnor_model.npz", "ab") as f:
            f.write(b"\0")
        (outside / "package" / "validation.json").unlink()
        rc_tampered, err_tampered = _validate(root, inside, "../replay.npz")
        left = (outside / "package" / "validation.json").exists()

    arch = ARCHES[arch_name]
    x86 = package["x86"]
    assert report["cpu"]["machine"] == arch.machine and report["cpu"]["numpy"].startswith("1."), report["cpu"]
    assert report["reference"]["engine"] == "XNOR-popcount (numpy)"
    assert report["agreement"]["exact"] and report["images"] == x86["images"] == 300, report["agreement"]
    assert report["accuracy_pct"] == report["reference_accuracy_pct"] == x86["reference_accuracy_pct"]
    assert report["package_manifest_sha256"] == x86["package_manifest_sha256"]
    assert report["accelerator"]["recording"]["recorded_on"] == "x86_64"
    assert rc_changed == 1 and "differ from the XNOR reference" in err_changed, err_changed[-2000:]
    assert rc_tampered == 2 and "xnor_model.npz: sha256" in err_tampered and not left, err_tampered[-2000:]
