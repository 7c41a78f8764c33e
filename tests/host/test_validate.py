"""host/validate.py's bookkeeping, in both environments: agreement, partial batches, budgets, report.

The accelerator here is deploy_helpers.ReferenceAccelerator (a test double that answers through
the XNOR reference and the driver packing). The real backends are exercised in test_board.py and
tests/hw_builds/test_emulation.py; these tests pin what validate.py does with their answers.
"""

from __future__ import annotations

import json

import pytest
from deploy_helpers import ReferenceAccelerator, build_package

from host.package import load_package
from host.validate import validate_package


def _run(root, flip=(), **kw):
    pkg = load_package(root)
    acc = ReferenceAccelerator(pkg.settings, pkg.xnor_model, flip=flip)
    return acc, validate_package(root, "emulation", root.parent / "validation.json", accelerator=acc, **kw)


def test_exact_agreement_and_final_partial_batch(tmp_path) -> None:
    root = build_package(tmp_path, n_test=37)
    acc, report = _run(root)
    assert acc.batch_sizes == [10, 10, 10, 7]  # 37 images in batches of 10: the last one partial
    assert report["images"] == 37
    assert report["agreement"] == {"exact": True, "matching_images": 37, "differing_images": 0,
                                   "agreement_pct": 100.0, "first_difference": None,
                                   "arithmetic": "the accelerator's own", "values_overflowing_type": None}
    assert report["accelerator"]["batch"]["batches"] == 4
    assert report["reference"]["batch"]["images"] == 37
    lat = report["reference"]["latency"]
    assert lat["kind"] == "measured" and 0 < lat["latency_us_p50"] <= lat["latency_us_p99"]
    est = report["accelerator"]["latency"]
    assert est["kind"] == "estimate" and est["latency_us"] == pytest.approx(41.4)
    assert report["power"]["accelerator"] is None and report["power"]["reason"]
    assert report["budgets"]["power_mw"]["status"] == "not_measured"
    assert report["budgets"]["latency_ms"]["status"] == "pass"
    # random weights and random labels: accuracy near chance, so the accuracy budget fails
    assert report["budgets"]["accuracy_pct"]["status"] == "fail"
    assert report["passed"] is False
    on_disk = json.loads((tmp_path / "validation.json").read_text())
    assert on_disk == json.loads(json.dumps(report))


def test_first_difference_is_reported(tmp_path) -> None:
    root = build_package(tmp_path, n_test=25)
    _, report = _run(root, flip=(13, 20))
    agreement = report["agreement"]
    assert agreement["exact"] is False and agreement["differing_images"] == 2
    first = agreement["first_difference"]
    assert first["position"] == 13 and first["test_index"] == 13
    assert first["accelerator"] == (first["reference"] + 1) % 10
    assert report["passed"] is False


def test_budgets_not_enforced_still_require_agreement(tmp_path) -> None:
    cfg = {"batch_size": 8, "latency_repeats": 3, "enforce_budgets": False,
           "budgets": {"accuracy_min_pct": 90.0, "latency_max_ms": 50.0, "power_max_mw": 100.0}}
    root = build_package(tmp_path, n_test=9, config=cfg)
    _, report = _run(root)
    assert report["budgets"]["accuracy_pct"]["status"] == "fail" and report["passed"] is True
    _, report = _run(root, flip=(0,))
    assert report["passed"] is False


def test_limit_and_batch_size_override(tmp_path) -> None:
    root = build_package(tmp_path, n_test=30)
    acc, report = _run(root, limit=11, batch_size=4)
    assert report["images"] == 11 and acc.batch_sizes == [4, 4, 3]
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        _run(root, limit=0)
