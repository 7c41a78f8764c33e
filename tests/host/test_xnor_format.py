"""xnor_model.npz: what is written is read back identically, and a damaged or foreign file is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from host.xnor import XnorReference
from host.xnor_format import FORMAT_VERSION, XnorFormatError, load_xnor_model, save_xnor_model
from host.xnor_random import MLP_WIDTHS, random_xnor_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, object]:
    model = random_xnor_model(MLP_WIDTHS["tfc"], np.random.default_rng(0), input_shape=(1, 28, 28))
    path = tmp_path / "xnor_model.npz"
    save_xnor_model(model, path)
    return path, model


def _rewrite(path: Path, edit) -> None:
    """Load every array, let ``edit`` change the dict, write it back as a plain npz (no new manifest)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez(path, **arrays)


def test_roundtrip_is_identical(saved) -> None:
    path, model = saved
    loaded = load_xnor_model(path)
    assert loaded.input_shape == (1, 28, 28)
    for name, arr in model.arrays().items():
        np.testing.assert_array_equal(loaded.arrays()[name], arr, err_msg=name)
    x = np.random.default_rng(1).integers(0, 256, size=(30, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(XnorReference(loaded).logits(x), XnorReference(model).logits(x))


def test_size_report_counts_packed_bits(saved) -> None:
    path, model = saved
    sizes = model.size_report()
    # 784*64 + 3 * 64*64... packed per row: 784 bits -> 98 bytes, 64 -> 8 bytes
    assert sizes["weights_packed_bytes"] == 64 * 98 + 64 * 8 * 2 + 10 * 8
    assert sizes["weights_fp32_bytes"] == 4 * (784 * 64 + 64 * 64 * 2 + 64 * 10)
    assert sizes["compression_x"] == pytest.approx(32.0, rel=0.01)


def test_flipped_weight_bit_is_refused(saved) -> None:
    path, _ = saved

    def flip(arrays):
        arrays["layer1_weights"] = arrays["layer1_weights"].copy()
        arrays["layer1_weights"][0, 0] ^= 1

    _rewrite(path, flip)
    with pytest.raises(XnorFormatError, match=r"layer1_weights.*sha256") as err:
        load_xnor_model(path)
    assert str(path) in str(err.value)


def test_version_mismatch_is_refused(saved) -> None:
    path, _ = saved

    def bump(arrays):
        manifest = json.loads(str(arrays["manifest"]))
        manifest["format_version"] = FORMAT_VERSION + 1
        arrays["manifest"] = np.array(json.dumps(manifest))

    _rewrite(path, bump)
    with pytest.raises(XnorFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        load_xnor_model(path)


def test_missing_array_is_refused(saved) -> None:
    path, _ = saved
    _rewrite(path, lambda arrays: arrays.pop("layer0_thresholds"))
    with pytest.raises(XnorFormatError, match="do not match the manifest"):
        load_xnor_model(path)


def test_truncated_file_is_refused(saved) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(XnorFormatError, match="not a readable xnor_model.npz"):
        load_xnor_model(path)


def test_corrupted_bytes_inside_the_archive_are_refused(saved) -> None:
    """Damage the stored bytes of an array member (stored uncompressed): the zip CRC or sha256 catches it."""
    path, _ = saved
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("layer0_weights.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200] ^= 0xFF  # inside the member's data, past headers
    path.write_bytes(bytes(data))
    with pytest.raises(XnorFormatError):
        load_xnor_model(path)


def test_foreign_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(XnorFormatError, match="no 'manifest'"):
        load_xnor_model(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_xnor_model(tmp_path / "absent.npz")


def test_inconsistent_model_is_not_written(tmp_path: Path) -> None:
    model = random_xnor_model([10, 4, 3], np.random.default_rng(2))
    model.layers[1].in_features = 5
    path = tmp_path / "bad.npz"
    with pytest.raises(XnorFormatError, match="layer1 expects 5 inputs but receives 4"):
        save_xnor_model(model, path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_host_xnor_imports_only_numpy() -> None:
    """host/ is copied to the board: importing the reference must not pull torch, FINN or numba."""
    code = (
        "import sys, numpy as np\n"
        "import host.xnor, host.xnor_format, host.xnor_random\n"
        "m = host.xnor_random.random_xnor_model([20, 4, 3], np.random.default_rng(0))\n"
        "host.xnor.XnorReference(m, backend='numpy').predict(np.zeros((2, 20), np.uint8))\n"
        "bad = sorted({n.split('.')[0] for n in sys.modules} & {'torch', 'finn', 'qonnx', 'onnx', 'brevitas', 'numba', 'scipy'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("field", ["input_shape", "layer_geometry"])
def test_an_edited_manifest_is_refused_by_its_seal(saved, tmp_path, field: str) -> None:
    """Array hashes alone would let an edited manifest through (a changed pool kernel or act_bias changes
    the logits but no array); the manifest carries its own sha256."""
    path, _ = saved

    def edit(arrays):
        manifest = json.loads(str(arrays["manifest"]))
        if field == "input_shape":
            manifest["input_shape"] = [1, 784]
        else:
            manifest["layers"][0]["act_bias"] = -1
        arrays["manifest"] = np.array(json.dumps(manifest))

    _rewrite(path, edit)
    with pytest.raises(XnorFormatError, match="manifest fails its sha256 check"):
        load_xnor_model(path)
