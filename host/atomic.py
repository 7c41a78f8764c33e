"""Atomic file writes: a temp file next to the target, then ``os.replace`` over it.

Why: every stage output (JSON reports, checkpoints, npz archives, figures) is read by a later
step or by Snakemake, and a crash or a Ctrl-C halfway through a plain write would leave a
truncated file that looks finished. A rename within one folder is atomic on POSIX, so a reader
sees either the old file or the complete new one, and a failed write leaves nothing behind.

Standard library only: host/ is copied to the FPGA board, where only numpy can be relied on.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a fresh temp path next to ``path``; on success give it ``mode`` and rename it to ``path``.

    The temp file is created empty (by ``mkstemp``) in ``path``'s folder, which is created if
    missing: the same file system, so the rename is atomic. Writers may open or overwrite it by
    name. ``mode`` is set explicitly because ``mkstemp`` creates 0600 and outputs are for reading.
    On any exception (KeyboardInterrupt included) the temp file is removed and the error re-raised,
    leaving an existing ``path`` untouched.

    ``keep_suffix=True`` ends the temp name with ``path``'s suffix (``.x.npz.abc123.tmp.npz``), for
    writers that pick the format from it or append one when missing (``np.savez``, matplotlib's
    ``savefig``, ``onnx.save``); otherwise the name ends in ``.tmp``. The name is random, so give a
    writer that records its file name in the output (``torch.save`` names its zip folder after it)
    an open file object instead, or the bytes differ from run to run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path`` as a Path."""
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path`` as a Path."""
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as ``json.dumps(obj, indent=indent, sort_keys=sort_keys)`` plus a newline, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
