"""Command line: ``python -m host validate --package DIR --backend board|emulation|replay --out FILE``.

Exit status: 0 = exact agreement with the XNOR reference and no failed budget; 1 = a disagreement
or a failed budget (the report says which), or, replaying, an image this CPU packs into bytes the
recording lacks; 2 = refused input (package, data, backend, recording), with a
one-line message naming the file and what is wrong.

``--backend board`` is opened by host/ itself; ``--backend emulation`` only where the FINN side hands
its accelerator in (``python -m hw_builds.validate_emulated validate ...`` calls :func:`main` with
``openers``); from host/ alone it is refused with exit status 2 and where to run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from collections.abc import Mapping

from host.accelerator import BACKENDS, BackendUnavailable, Opener
from host.refusal import EXIT_REFUSED, RefusedInput, one_line

EXIT_OK, EXIT_FAILED = 0, 1


def _count(text: str) -> int:
    """argparse type of a count: an integer >= 1 (argparse refuses anything else with exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _check_out(path: str) -> None:
    """Refuse an ``--out`` the report could not be written to, before any work: a directory, no parent folder."""
    out = Path(path)
    if out.is_dir():
        raise RefusedInput(f"--out {out}: is a directory, expected the report's file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RefusedInput(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise RefusedInput(f"--out {out}: not writable")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="accelerator vs XNOR reference on the package's test set")
    v.add_argument("--package", required=True, help="deployment package directory (has manifest.json)")
    v.add_argument("--backend", choices=BACKENDS, default="board",
                   help="board (PYNQ), emulation (FINN, build host) or replay (recorded answers, --replay)")
    v.add_argument("--replay", default=None, help="replay backend: the recording (host/replay.py) to answer from")
    v.add_argument("--out", default="validation.json", help="where to write the JSON report")
    v.add_argument("--batch-size", type=_count, default=None, help="batch N for throughput (default: package config)")
    v.add_argument("--latency-repeats", type=_count, default=None, help="batch-1 runs for p50/p99 (default: package config)")
    v.add_argument("--limit", type=_count, default=None, help="only the first N test images")
    return p


def main(argv: list[str] | None = None, openers: Mapping[str, Opener] | None = None) -> int:
    """Run the command line ``argv``; ``openers`` supplies backends host/ does not open itself. Returns the exit status."""
    args = _parser().parse_args(argv)
    from host.replay import ReplayMismatch
    from host.validate import validate_package

    try:
        _check_out(args.out)
        report = validate_package(
            args.package,
            args.backend,
            args.out,
            batch_size=args.batch_size,
            latency_repeats=args.latency_repeats,
            limit=args.limit,
            openers=openers,
            replay=args.replay,
        )
    except ReplayMismatch as err:
        print(f"host validate: FAILED: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (RefusedInput, BackendUnavailable, ValueError, TypeError) as err:  # RefusedInput: every file / argument check
        print(f"host validate: refused: {one_line(err, 2000)}", file=sys.stderr)
        return EXIT_REFUSED
    summary = {
        "backend": report["backend"],
        "images": report["images"],
        "accuracy_pct": report["accuracy_pct"],
        "agreement": report["agreement"],
        "budgets": {k: v["status"] for k, v in report["budgets"].items()},
        "passed": report["passed"],
        "report": args.out,
    }
    print(json.dumps(summary, indent=2))
    if not report["agreement"]["exact"]:
        d = report["agreement"]["first_difference"]
        print(
            f"host validate: FAILED: {report['agreement']['differing_images']} image(s) differ from the XNOR "
            f"reference; first at package position {d['position']} (test image {d['test_index']}): accelerator {d['accelerator']}, "
            f"reference {d['reference']}, label {d['label']}",
            file=sys.stderr,
        )
    elif not report["passed"]:
        failed = [k for k, v in report["budgets"].items() if v["status"] == "fail"]
        print(f"host validate: FAILED budgets: {', '.join(failed)}", file=sys.stderr)
    return EXIT_OK if report["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
