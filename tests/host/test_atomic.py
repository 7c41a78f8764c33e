"""host/atomic.py: a write is all or nothing, readable (0644), and leaves no temp file behind.

Standard library and pytest only: this also runs in the board environment (numpy<2, no torch).
"""

from __future__ import annotations

import ast
import json
import stat
import sys
from pathlib import Path

import pytest

from host.atomic import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_path_writes_with_mode_0644_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "out.bin"  # missing parents are created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.bin.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and not target.exists()  # nothing at the target until the rename
        tmp.write_bytes(b"payload")
    assert target.read_bytes() == b"payload"
    assert _mode(target) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_atomic_path_mode_and_keep_suffix(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    with atomic_path(target, mode=0o600, keep_suffix=True) as tmp:
        assert tmp.name.startswith(".figure.png.") and tmp.suffix == ".png"
        tmp.write_text("x")
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_exception_keeps_old_file_and_removes_temp(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "report.json"
    target.write_text("old\n")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise error("stop")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_exception_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.txt"):
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_text_and_bytes_replace_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o600)
    assert write_text_atomic(target, "néw\n") == target
    assert target.read_text(encoding="utf-8") == "néw\n" and _mode(target) == 0o644
    assert write_bytes_atomic(str(tmp_path / "b.bin"), b"\x00\x01") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_json_format(tmp_path: Path) -> None:
    obj = {"b": 1, "a": [1.5, None, True], "c": {"z": "x"}}
    path = write_json_atomic(tmp_path / "out.json", obj)
    assert path.read_text() == json.dumps(obj, indent=2) + "\n"
    assert path.read_text().startswith('{\n  "b": 1,')  # insertion order kept by default
    write_json_atomic(path, obj, indent=None, sort_keys=True)
    assert path.read_text() == '{"a": [1.5, null, true], "b": 1, "c": {"z": "x"}}\n'
    assert json.loads(path.read_text()) == obj and _mode(path) == 0o644


def test_unserialisable_json_leaves_old_file(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "out.json", {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_imports_only_the_standard_library() -> None:
    """host/ is copied to the board, where only numpy can be relied on; this module needs not even that."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "host" / "atomic.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - set(sys.stdlib_module_names) == set()
