"""A build folder that a failed run left behind says so: ``FAILED.json`` beside what it kept for debugging.

A FINN build (or front end) that stops keeps ``golden/`` and ``intermediate_models/`` (the graph after
every step that ran) because they are what one debugs with, but Snakemake only removes the rule's
declared output (``summary.json``), so nothing else would say that the folder belongs to a failed build.
:func:`failure_marker` writes ``FAILED.json`` (the stage, the error in one line, the folders kept) when the
build raises, and the next run of the stage removes it with the rest of the old outputs before it starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from host.atomic import write_json_atomic
from host.refusal import one_line

MARKER = "FAILED.json"


def clear_failure(output_dir: str | Path) -> None:
    """Remove a previous run's ``FAILED.json`` (called where a stage clears its old outputs)."""
    (Path(output_dir) / MARKER).unlink(missing_ok=True)


@contextmanager
def failure_marker(output_dir: str | Path, stage: str, kept: tuple[str, ...] = ("golden", "intermediate_models")) -> Iterator[None]:
    """Run a build in ``output_dir``; if it raises, write ``FAILED.json`` there and re-raise unchanged.

    The marker holds ``stage``, ``error`` (type and one-line message), ``kept`` (those of ``kept`` that
    exist, for debugging) and ``cleared_by`` (the next run of the stage).
    """
    output_dir = Path(output_dir)
    clear_failure(output_dir)
    try:
        yield
    except BaseException as exc:
        if output_dir.is_dir():
            write_json_atomic(output_dir / MARKER, {
                "stage": stage,
                "error": f"{type(exc).__name__}: {one_line(exc, 2000)}",
                "kept": sorted(name for name in kept if (output_dir / name).exists()),
                "cleared_by": f"the next run of {stage} (it starts by removing this folder's old outputs)",
            })
        raise
