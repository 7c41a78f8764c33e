"""host/verdicts.py: the gate after validation fails the run on a failed verdict, and keeps the measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.refusal import InputFileError, RefusedInput
from host.verdicts import check_verdicts, verdict_line


def _report(passed: bool, differing: int = 0, accuracy: float = 95.0) -> dict:
    status = "pass" if accuracy > 90 else "fail"
    return {"passed": passed, "agreement": {"exact": differing == 0, "differing_images": differing},
            "budgets": {"accuracy_pct": {"limit": 90, "value": accuracy, "status": status},
                        "power_mw": {"limit": 1000, "value": None, "status": "not_measured"}}}


def _write(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def test_all_passed_writes_the_verdicts(tmp_path: Path) -> None:
    a = _write(tmp_path / "a/validation.json", _report(True))
    assert check_verdicts([a], tmp_path / "verdicts.json") == 0
    assert json.loads((tmp_path / "verdicts.json").read_text()) == {"verdicts": {str(a): "passed"}}


def test_issue17_case11_a_missed_budget_fails_the_gate_and_the_file_stays(tmp_path: Path, capsys) -> None:
    """TFC-w1a1 on Fashion-MNIST: 80.92 %, 10,000 / 10,000 agreement, the 90 % budget missed."""
    ok = _write(tmp_path / "ok/validation.json", _report(True))
    low = _write(tmp_path / "fashion/validation.json", _report(False, accuracy=80.92))
    bad = _write(tmp_path / "bad/validation.json", _report(False, differing=3))
    assert check_verdicts([ok, low, bad], tmp_path / "verdicts.json") == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{low}: FAILED budgets: accuracy_pct 80.92 (limit 90)",
        f"{bad}: FAILED: 3 image(s) differ from the XNOR reference",
    ]
    assert low.is_file() and bad.is_file() and not (tmp_path / "verdicts.json").exists()


def test_unreadable_or_foreign_reports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="validation.json: validation report not found"):
        check_verdicts([tmp_path / "validation.json"], tmp_path / "v.json")
    with pytest.raises(RefusedInput, match=r"x.json: not a host validate report \(no 'agreement'\)"):
        verdict_line("x.json", {"passed": False})
