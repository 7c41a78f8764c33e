"""host/package.py: a package is complete, and a missing or changed file is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from deploy_helpers import build_package, tfc_settings

from host.package import PackageError, load_package, make_package


def test_package_layout_and_manifest(tmp_path) -> None:
    root = build_package(tmp_path, n_test=12)
    pkg = load_package(root)
    files = set(pkg.manifest["files"])
    for rel in ("driver/settings.json", "xnor_model.npz", "testset.npz", "validate_config.json", "README.md",
                "emulation/model.onnx", "host/validate.py", "host/packing.py", "host/__main__.py"):
        assert rel in files, rel
    assert pkg.target == "emulation" and pkg.bitfile is None
    x, labels, indices = pkg.load_testset()
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.uint8
    assert labels.dtype == np.int64 and indices.tolist() == list(range(12))
    assert "python3 -m host validate --package . --backend board" in (root / "README.md").read_text()


def test_hardware_package_has_bitfile_and_hwh(tmp_path) -> None:
    pkg = load_package(build_package(tmp_path, target="hardware"))
    assert pkg.bitfile.name == "finn-accel.bit"
    assert "bitfile/finn-accel.hwh" in pkg.manifest["files"]


@pytest.mark.parametrize("rel", ["xnor_model.npz", "testset.npz", "driver/settings.json", "host/packing.py"])
def test_missing_file_is_refused(tmp_path, rel) -> None:
    root = build_package(tmp_path)
    (root / rel).unlink()
    with pytest.raises(PackageError, match=f"{rel}: listed in the manifest but missing"):
        load_package(root)


@pytest.mark.parametrize("rel", ["xnor_model.npz", "testset.npz", "validate_config.json", "host/xnor.py"])
def test_tampered_file_is_refused(tmp_path, rel) -> None:
    root = build_package(tmp_path)
    data = bytearray((root / rel).read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (root / rel).write_bytes(bytes(data))
    with pytest.raises(PackageError, match=f"{rel}: sha256 .* differs from the manifest"):
        load_package(root)


def test_missing_manifest_and_bad_paths(tmp_path) -> None:
    root = build_package(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["../outside"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="outside the package"):
        load_package(root)
    (root / "manifest.json").unlink()
    with pytest.raises(PackageError, match="manifest missing"):
        load_package(root)
    with pytest.raises(PackageError, match="no such package directory"):
        load_package(tmp_path / "nowhere")


def test_testset_that_does_not_match_the_input_is_refused(tmp_path) -> None:
    settings = tfc_settings()
    io = settings["driver_information"]["io_shape_dict"]
    io.update(ishape_normal=[[1, 3072]], ishape_folded=[[1, 192, 16]], ishape_packed=[[1, 192, 16]])
    with pytest.raises(PackageError, match=r"testset.npz: test images of shape \(1, 28, 28\) do not match the accelerator input \(3072,\)"):
        build_package(tmp_path, settings=settings)
    assert not (tmp_path / "deploy").exists(), "no half-written package may remain"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deploy.")]


def test_package_needs_its_accelerator_files(tmp_path) -> None:
    build_package(tmp_path)  # writes the inputs next to it
    common = dict(model="tfc_w1a1", board="Pynq-Z1", settings_json=tmp_path / "settings.json",
                  xnor_npz=tmp_path / "xnor_model.npz", dataset_npz=tmp_path / "data.npz", test_subset=5,
                  validate_config={}, host_dir=tmp_path / "deploy" / "host")
    model = tmp_path / "model.onnx"
    with pytest.raises(PackageError, match="needs the .bit file"):
        make_package(tmp_path / "p1", target="hardware", emulation_model=model, **common)
    with pytest.raises(PackageError, match="missing; a hardware package needs the .bit and its .hwh"):
        make_package(tmp_path / "p2", target="hardware", bitfile=tmp_path / "none.bit", emulation_model=model, **common)
    with pytest.raises(PackageError, match="needs the FINN dataflow model"):
        make_package(tmp_path / "p3", target="emulation", **common)
    with pytest.raises(PackageError, match="target must be one of"):
        make_package(tmp_path / "p4", target="bitstream", **common)
    root = make_package(tmp_path / "p5", target="emulation", emulation_model=tmp_path / "model.onnx", **common)
    assert load_package(root).load_testset()[0].shape[0] == 5  # test_subset respected


@pytest.mark.parametrize("config,message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"latency_repeats": "100"}, "latency_repeats must be a positive integer"),
    ({"budgets": {"accuracy_min_pct": "90"}}, "budget accuracy_min_pct must be a number"),
    ({"budgets": {"speed": 1}}, "unknown budget 'speed'"),
    ({"enforce_budgets": "yes"}, "enforce_budgets must be true or false"),
    ({"brevitas_float_ties": -1}, "brevitas_float_ties must be a count"),
])
def test_bad_validate_config_is_refused(tmp_path, config, message) -> None:
    root = build_package(tmp_path, config=config)
    with pytest.raises(PackageError, match=f"validate_config.json: {message}"):
        load_package(root)


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((0, 1, 28, 28), np.uint8), "labels": np.zeros(0, np.int64)}, "the test set is empty"),
    ({"x": np.zeros((2, 1, 28, 28), np.float32), "labels": np.zeros(2, np.int64)}, r"x is float32\(2, 1, 28, 28\), expected uint8"),
    ({"x": np.zeros((2, 784), np.uint8), "labels": np.zeros(2, np.int64)}, r"x is uint8\(2, 784\), expected uint8 raw pixels"),
    ({"x": np.zeros((2, 1, 28, 28), np.uint8), "labels": np.zeros(3, np.int64)}, r"labels is int64\(3,\), expected integers \(2,\)"),
    ({"x": np.zeros((2, 1, 28, 28), np.uint8)}, r"missing array\(s\) \['labels'\]"),
])
def test_bad_testset_is_refused(tmp_path, arrays, message) -> None:
    from host.package import load_testset
    from host.packing import DriverSettings

    np.savez(tmp_path / "testset.npz", **arrays)
    with pytest.raises(PackageError, match=f"testset.npz: {message}"):
        load_testset(tmp_path / "testset.npz", DriverSettings.from_dict(tfc_settings()))


def test_manifest_digest_that_is_not_a_string_is_refused(tmp_path) -> None:
    """A manifest "files" value that is not a sha256 string: one line naming the manifest and the key, exit 2."""
    root = build_package(tmp_path / "p")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["testset.npz"] = 123
    (root / "manifest.json").write_text(json.dumps(manifest))
    res = subprocess.run([sys.executable, "-m", "host", "validate", "--package", str(root), "--backend", "replay"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"host validate: refused: {root / 'manifest.json'}: files['testset.npz'] must be a sha256 hex digest "
        "(64 characters), got 123"]
