"""The gate after validation: a failed verdict fails the run, and the measurement that shows why stays.

Snakemake deletes the outputs of a failed job, so a ``validation.json`` whose verdict is "failed" (a
disagreement with the XNOR reference, a missed budget) must not be the output of a failing job: the file
that explains the failure would be gone and the report could not show it. The validate_accelerator rule
therefore keeps every measured ``validation.json`` (its job fails only for refused input), and the
check_validations rule, run after the report, reads them all with :func:`check_verdicts` and fails the
run with exit status 1 naming each failed verdict. Standard library only (host/ runs on the board).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from host.atomic import write_json_atomic
from host.refusal import RefusedInput, read_json

EXIT_FAILED = 1  # a disagreement or a failed budget (host/__main__.py's status)


def verdict_line(path: str | Path, validation: dict) -> str | None:
    """One line naming why the ``validation.json`` at ``path`` failed, or None when it passed.

    Raises :class:`RefusedInput` for a file without the verdict keys (not a host validate report).
    """
    try:
        passed, agreement, budgets = validation["passed"], validation["agreement"], validation["budgets"]
        exact, differing = agreement["exact"], agreement["differing_images"]
    except (KeyError, TypeError) as err:
        raise RefusedInput(f"{path}: not a host validate report (no {err})") from None
    if passed:
        return None
    if not exact:
        return f"{path}: FAILED: {differing} image(s) differ from the XNOR reference"
    failed = [f"{name} {b.get('value')} (limit {b.get('limit')})" for name, b in budgets.items() if b.get("status") == "fail"]
    return f"{path}: FAILED budgets: {', '.join(failed) or 'none named'}"


def check_verdicts(validation_paths: Sequence[str | Path], out_json: str | Path) -> int:
    """Read every ``validation.json``; write ``out_json`` (path -> "passed") and return 0 when all passed.

    Otherwise print one line per failed verdict to stderr, write nothing and return 1. A missing or
    unreadable file raises :class:`host.refusal.InputFileError` (a refused input, exit status 2).
    """
    import sys

    verdicts, failures = {}, []
    for path in validation_paths:
        line = verdict_line(path, read_json(path, "validation report"))
        verdicts[str(path)] = "passed" if line is None else "failed"
        if line is not None:
            failures.append(line)
    for line in failures:
        print(line, file=sys.stderr)
    if failures:
        return EXIT_FAILED
    write_json_atomic(out_json, {"verdicts": verdicts})
    return 0



