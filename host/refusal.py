"""Refused input: the one error family of bnnflow for what a user can fix, and one checked reader per file kind.

Every stage that reads a user-facing file (a data set or array ``.npz``, a JSON manifest, settings or
folding file) reads it through :func:`read_npz` / :func:`read_json`, so a missing, truncated or
ill-typed file is always the same one-line :class:`InputFileError` naming the file and what is wrong,
never numpy's ``BadZipFile`` or an ``AttributeError`` further on. Each world's own refusals (a bad
package, data set, folding, model graph) subclass :class:`RefusedInput`; CLIs and Snakemake scripts turn
any of them into one line on stderr and exit status 2 (:func:`exit_on_refusal`), the documented status
for refused input (1 is a disagreement or a failed budget). Standard library and numpy only: host/ is
copied to the board, and every other world may import it.
"""

from __future__ import annotations

import json
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

EXIT_REFUSED = 2  # refused input or environment (0: pass, 1: disagreement or failed budget)


class RefusedInput(ValueError):
    """Input bnnflow refuses (a file, a setting, an argument, a model graph); the message names it and why."""


class InputFileError(RefusedInput):
    """A file that is missing, unreadable or not what its kind requires; the message starts with its path."""


class MissingFileError(InputFileError, FileNotFoundError):
    """An input file that does not exist (also a FileNotFoundError, for callers that test for that)."""


def one_line(text: str, limit: int = 500) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut at ``limit`` characters."""
    flat = " ".join(str(text).split()) or "(no message)"
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _existing(path: str | Path, what: str, hint: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected a {what}")
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} not found{'; ' + hint if hint else ''}")
    return path


def read_npz(path: str | Path, what: str = ".npz file", keys: Sequence[str] = (), hint: str = "") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read in full (pickles refused).

    ``what`` names the file's kind in messages ("prepared data set"); ``keys`` must all be present.
    Raises :class:`InputFileError` for a missing file, a directory, a truncated or corrupt archive or
    member, an object array, or a missing key, naming the path.
    """
    path = _existing(path, what, hint)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise InputFileError(f"{path}: a single .npy array, expected a {what} (.npz archive)")
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise InputFileError(f"{path}: missing array(s) {missing} of a {what} (it has {sorted(npz.files)})")
            return {k: npz[k] for k in npz.files}
    except InputFileError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise InputFileError(f"{path}: not a readable {what} ({type(err).__name__}: {one_line(err, 200)})") from err


def read_json(path: str | Path, what: str = "JSON file", expect: type = dict, hint: str = ""):
    """The JSON value in ``path``, which must be a ``expect`` (dict: a JSON object; list: an array).

    Raises :class:`InputFileError` for a missing file, a directory, bytes that are not UTF-8 JSON,
    or a value of another type, naming the path.
    """
    path = _existing(path, what, hint)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputFileError(f"{path}: not readable JSON, expected a {what} ({type(err).__name__}: {one_line(err, 200)})") from err
    if not isinstance(value, expect):
        kinds = {dict: "a JSON object", list: "a JSON array"}
        raise InputFileError(f"{path}: {what} must be {kinds.get(expect, expect.__name__)}, found {type(value).__name__}")
    return value


@contextmanager
def exit_on_refusal(stage: str) -> Iterator[None]:
    """Run a stage; a :class:`RefusedInput` becomes one line ``<stage>: refused: <cause>`` on stderr and exit 2.

    Snakemake scripts wrap their call in it (their stderr is the rule's log), so a refused input fails
    the job with status 2 and the cause on the log's last line; other exceptions pass unchanged.
    """
    try:
        yield
    except RefusedInput as err:
        print(f"{stage}: refused: {one_line(err, 2000)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_REFUSED) from None
