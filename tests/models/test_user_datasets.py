"""A user's data set from an .npz: a 5-class set cut from real MNIST, read in every layout, and each bad file
refused with one line naming the file and the array, nothing written (issue 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.datasets import DataError, load_npz, prepare_user_dataset, read_user_npz

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits5(small_mnist: Path) -> dict[str, np.ndarray]:
    """Digits 0-4 of the small real MNIST set, NHW uint8 images, int64 labels, with class names."""
    arrays = load_npz(small_mnist)
    out = {}
    for split in ("train", "test"):
        keep = arrays[f"y_{split}"] < 5
        out[f"x_{split}"] = arrays[f"x_{split}"][keep]
        out[f"y_{split}"] = arrays[f"y_{split}"][keep].astype(np.int64)
    out["class_names"] = np.array(["zero", "one", "two", "three", "four"])
    return out


def save(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "user.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("layout", "shape", "to_layout"), [
    ("NHW", [28, 28], lambda x: x),
    ("NHWC", [28, 28, 1], lambda x: x[..., None]),
    ("NCHW", [1, 28, 28], lambda x: x[:, None]),
])
def test_every_layout_prepares_the_same_images(tmp_path: Path, digits5: dict, layout: str, shape: list, to_layout) -> None:
    arrays = {**digits5, "x_train": to_layout(digits5["x_train"]), "x_test": to_layout(digits5["x_test"])}
    out = tmp_path / "prepared.npz"
    counts = prepare_user_dataset(save(tmp_path, arrays), out, layout, shape, classes=5)
    assert counts == {"train_images": len(digits5["x_train"]), "test_images": len(digits5["x_test"]), "classes": 5}
    prepared = load_npz(out)
    for split in ("train", "test"):
        images = prepared[f"x_{split}"].reshape(len(prepared[f"x_{split}"]), 28, 28)
        assert np.array_equal(images, digits5[f"x_{split}"])
        assert prepared[f"y_{split}"].dtype == np.uint8 and np.array_equal(prepared[f"y_{split}"], digits5[f"y_{split}"])
    assert set(np.unique(prepared["y_test"])) == {0, 1, 2, 3, 4}
    with np.load(out) as npz:
        assert npz["class_names"].tolist() == ["zero", "one", "two", "three", "four"]


def test_nchw_rgb_becomes_nhwc(tmp_path: Path, digits5: dict) -> None:
    """A 3-channel NCHW set is stored NHWC, the layout host.inputs.to_model_input reads (as CIFAR-10)."""
    rgb = {k: v for k, v in digits5.items() if k != "class_names"}
    for split in ("train", "test"):
        x = digits5[f"x_{split}"]
        rgb[f"x_{split}"] = np.stack([x, 255 - x, x // 2], axis=1)  # (N, 3, 28, 28)
    prepared = read_user_npz(save(tmp_path, rgb), "NCHW", [3, 28, 28], classes=5)
    assert prepared["x_test"].shape == (len(rgb["x_test"]), 28, 28, 3)
    assert np.array_equal(prepared["x_test"].transpose(0, 3, 1, 2), rgb["x_test"])


BAD_FILES = [
    # (what is wrong, edit of the arrays, fragment naming the array and the fault)
    ("labels out of range", lambda a: a.update(y_test=np.where(a["y_test"] == 4, 5, a["y_test"])),
     "y_test holds labels 0..5, outside 0..4"),
    ("negative label", lambda a: a.update(y_train=np.concatenate([[-1], a["y_train"][1:]])), "y_train holds labels -1..4"),
    ("float images", lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "x_train has dtype float32, expected uint8"),
    ("float labels", lambda a: a.update(y_test=a["y_test"].astype(np.float64)), "y_test has dtype float64, expected integer"),
    ("wrong image shape", lambda a: a.update(x_test=a["x_test"][:, :27]), "x_test has shape"),
    ("one label short", lambda a: a.update(y_train=a["y_train"][:-1]), "y_train has shape"),
    ("empty test split", lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "x_test is empty"),
    ("missing array", lambda a: a.pop("y_test"), "missing array(s) y_test"),
    ("class names", lambda a: a.update(class_names=np.array(["a", "b"])), "class_names has dtype"),
]


@pytest.mark.parametrize(("what", "edit", "fragment"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_user_file_is_refused(tmp_path: Path, digits5: dict, what: str, edit, fragment: str) -> None:
    arrays = dict(digits5)
    edit(arrays)
    path, out = save(tmp_path, arrays), tmp_path / "prepared.npz"
    with pytest.raises(DataError) as err:
        prepare_user_dataset(path, out, "NHW", [28, 28], classes=5)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing half-written


def test_truncated_and_missing_files_are_refused(tmp_path: Path, digits5: dict) -> None:
    path = save(tmp_path, digits5)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"user\.npz: (not a readable \.npz|an array cannot be read)"):
        read_user_npz(path, "NHW", [28, 28], 5)
    with pytest.raises(DataError, match="nothing.npz: user data set not found"):
        read_user_npz(tmp_path / "nothing.npz", "NHW", [28, 28], 5)
    with pytest.raises(DataError, match="4 channels"):
        read_user_npz(path, "NHWC", [28, 28, 4], 5)


def test_prepare_script_exits_2_with_one_line(tmp_path: Path, digits5: dict) -> None:
    """Through Snakemake: the rule's script refuses the file with exit 2 and one line, and writes no output."""
    bad = dict(digits5)
    bad["y_train"] = bad["y_train"] + 1  # labels 1..5 for 5 classes
    data = tmp_path / "user_data"
    data.mkdir()
    save(data, bad, "digits5.npz")
    config = tmp_path / "user.yaml"
    config.write_text("data:\n  mlp_dataset: digits5\n  user_datasets:\n"
                      "    digits5: {path: user_data/digits5.npz, layout: NHW, image_shape: [28, 28], classes: 5}\n")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
         str(config), "--cores", "1", "resources/digits5.npz"], capture_output=True, text=True)
    assert run.returncode != 0
    log = (tmp_path / "logs" / "prepare_data" / "digits5.log").read_text()
    assert log.strip().splitlines()[-1] == (
        "prepare_user_dataset: refused: user_data/digits5.npz: y_train holds labels 1..5, outside 0..4 "
        "(the declared 5 classes)")
    assert "exit status 2" in run.stdout + run.stderr
    assert not (tmp_path / "resources" / "digits5.npz").exists()
