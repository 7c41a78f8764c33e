"""The root file system harness itself, where it needs neither QEMU nor root: mirror, cache key, mounts, refusal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import qemu_rootfs
from qemu_rootfs import ARCHES, BoardCpuUnavailable, apt_mirror, remove_tree, rootfs_spec

pytestmark = pytest.mark.board_cpu


def test_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert apt_mirror((tmp_path,)) == "http://mirror.example/debian"
    one_line = tmp_path / "lists"
    one_line.mkdir()
    (one_line / "x.list").write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert apt_mirror((one_line,)) == "http://other.example/debian"
    assert apt_mirror((tmp_path / "nothing",)) == qemu_rootfs.DEFAULT_MIRROR


def test_cache_key_changes_with_what_goes_in() -> None:
    key = lambda spec: hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()  # noqa: E731
    arm = rootfs_spec(ARCHES["armv7"], "http://m/debian")
    assert key(arm) != key(rootfs_spec(ARCHES["aarch64"], "http://m/debian"))
    assert key(arm) != key(rootfs_spec(ARCHES["armv7"], "http://n/debian"))
    assert key(arm) == key(rootfs_spec(ARCHES["armv7"], "http://m/debian"))
    assert "python3-numpy" in arm["debian_packages"] and "finn-plus-driver==1.6.1" in arm["pip_packages"]


def test_remove_tree_refuses_what_it_cannot_unmount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "root"
    (tree / "proc").mkdir(parents=True)
    monkeypatch.setattr(qemu_rootfs, "_mounts_under", lambda path: [str(tree / "proc")])
    monkeypatch.setattr(qemu_rootfs.subprocess, "run", lambda *a, **k: None)  # umount "fails"
    with pytest.raises(BoardCpuUnavailable, match="still has mounts"):
        remove_tree(tree)
    assert tree.is_dir()
    monkeypatch.undo()
    remove_tree(tree)
    assert not tree.exists()


def test_mounts_under_sees_proc() -> None:
    assert qemu_rootfs._mounts_under(Path("/proc")) and "/proc" in qemu_rootfs._mounts_under(Path("/proc"))
