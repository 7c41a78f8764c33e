"""hw_builds.verify: the golden-file contract and the integer-score check."""

from __future__ import annotations

import numpy as np
import pytest

from hw_builds.verify import GoldenFileError, affine_residual, load_golden


def _golden(tmp_path, **over):
    arrays = dict(x=np.zeros((3, 1, 28, 28), np.uint8), logits=np.zeros((3, 10), np.float32),
                  labels=np.zeros(3, np.int64), indices=np.arange(3, dtype=np.int64))
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "golden.npz"
    np.savez(path, **arrays)
    return path


def test_golden_contract(tmp_path):
    golden = load_golden(_golden(tmp_path, logits=np.eye(3, 10, k=2, dtype=np.float32)))
    np.testing.assert_array_equal(golden.top1, [2, 3, 4])
    assert len(golden.head(2).x) == 2 and golden.head(None) is golden


def test_top1_ties_take_the_lower_index(tmp_path):
    logits = np.array([[0, 3, 3, 1, 0, 0, 0, 0, 0, 0]] * 3, np.float32)
    assert load_golden(_golden(tmp_path, logits=logits)).top1.tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "over, pattern",
    [
        (dict(x=np.zeros((3, 1, 28, 28), np.float32)), "'x' must be uint8"),
        (dict(logits=None), "missing array 'logits'"),
        (dict(labels=np.zeros(2, np.int64)), "'labels' must have shape \\(3,\\)"),
        (dict(logits=np.zeros((2, 10), np.float32)), "'logits' must be float \\(N=3"),
    ],
)
def test_bad_golden_files(tmp_path, over, pattern):
    path = _golden(tmp_path, **over)
    with pytest.raises(GoldenFileError, match=f"{path}: {pattern}"):
        load_golden(path)
    with pytest.raises(GoldenFileError, match="not found"):
        load_golden(tmp_path / "missing.npz")


def test_affine_residual():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 65, size=(50, 10))
    logits = (1.9999 * scores - 63.9968).astype(np.float32)  # TensorNorm-like affine image
    assert affine_residual(scores, logits) < 1e-6
    assert affine_residual(scores, -logits) == float("inf")  # decreasing map reorders classes
    shuffled = scores.copy()
    shuffled[0, 0] += 1  # one integer off by one
    assert affine_residual(shuffled, logits) > 1e-4


def test_integer_scores_may_change_only_by_one_increasing_affine_map() -> None:
    """A step may re-express the class scores as a * I + b (one map for all classes, a > 0: streamlining's
    bipolar I -> popcount (I + K) / 2 for a graph without an output affine, issue 12), nothing else."""
    from hw_builds.verify import common_affine

    rng = np.random.default_rng(0)
    i = 2 * rng.integers(0, 38, size=(50, 5)) - 37  # bipolar dot products over K = 37
    assert common_affine(i, (i + 37) // 2) == ["1/2", "37/2"]
    assert common_affine(i, i) == ["1", "0"]
    assert common_affine(i, -i) is None  # reverses the ranking
    wrapped = (i + 37) // 2
    wrapped[3, 2] = (wrapped[3, 2] + 16) % 32  # an accumulator wrap on one image
    assert common_affine(i, (i + 37) // 2 * np.array([1, 1, 2, 1, 1])) is None  # a per-class map
    assert common_affine(i, wrapped) is None or wrapped[3, 2] == (i[3, 2] + 37) // 2
