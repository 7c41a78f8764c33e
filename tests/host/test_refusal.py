"""host/refusal.py: the checked .npz / JSON readers and the one-line, exit-2 refusal every stage uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host.refusal import InputFileError, MissingFileError, RefusedInput, exit_on_refusal, read_json, read_npz

REPO = Path(__file__).resolve().parents[2]


def test_read_npz_reads_every_array(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "a.npz", x=np.arange(3), y=np.ones((2, 2)))
    arrays = read_npz(tmp_path / "a.npz", "test file", ("x",))
    assert sorted(arrays) == ["x", "y"] and arrays["x"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(("content", "message"), [
    (b"", r"a.npz: not a readable test file \("),
    (b"PK\x03\x04 not really a zip", r"a.npz: not a readable test file \("),
    ("half", r"a.npz: not a readable test file \(BadZipFile: "),
    ("object", r"a.npz: not a readable test file \(ValueError: Object arrays cannot be loaded"),
    ("missing_key", r"a.npz: missing array\(s\) \['x'\] of a test file \(it has \['z'\]\)"),
])
def test_read_npz_refusals_name_the_file(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "a.npz"
    if content in ("half", "object", "missing_key"):
        arrays = {"x": np.array([{"a": 1}], dtype=object)} if content == "object" else {"x" if content == "half" else "z": np.arange(1000)}
        np.savez(path, **arrays)
        if content == "half":
            path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as err:
        read_npz(path, "test file", ("x",))
    assert "\n" not in str(err.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope.npz: data set not found; make it first") as err:
        read_npz(tmp_path / "nope.npz", "data set", hint="make it first")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, RefusedInput)
    with pytest.raises(InputFileError, match=r": is a directory, expected a settings file"):
        read_json(tmp_path, "settings file")


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", r"s.json: settings file must be a JSON object, found list"),
    ("{not json", r"s.json: not readable JSON, expected a settings file \(JSONDecodeError: "),
    (b"\xff\xfe", r"s.json: not readable JSON, expected a settings file \(UnicodeDecodeError: "),
])
def test_read_json_refusals(tmp_path: Path, text, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputFileError, match=message):
        read_json(path, "settings file")
    path.write_text(json.dumps({"a": 1}))
    assert read_json(path, "settings file") == {"a": 1}


def test_exit_on_refusal_is_one_line_and_status_2() -> None:
    code = ("from host.refusal import RefusedInput, exit_on_refusal\n"
            "with exit_on_refusal('stage_x'):\n    raise RefusedInput('f.onnx: not\\n  good')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and run.stderr == "stage_x: refused: f.onnx: not good\n"
    code = "from host.refusal import exit_on_refusal\nwith exit_on_refusal('stage_x'):\n    raise KeyError('bug')\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1 and "Traceback" in run.stderr  # not a refusal: a bug keeps its traceback (in the log)
