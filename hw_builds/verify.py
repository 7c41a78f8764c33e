"""Check each FINN build step against Brevitas on the golden set from export.

The golden file holds raw uint8 pixels and Brevitas' float logits. After every software step
the current graph runs on those pixels in FINN's python execution (hw_builds.execute), and:

* the top-1 class must equal numpy.argmax of Brevitas' logits on every sample, exactly (ONNX
  TopK and argmax both break ties towards the lower index, and tied logits come from equal
  integer accumulators, so ties are no excuse);
* where the graph still ends in float logits, they must match Brevitas' to float rounding;
* where it exposes integer class scores (the popcounts entering TopK / LabelSelect), they must
  be integers, equal bit for bit to the previous step's, and an exact affine image of Brevitas'
  logits per class (logit = a * score + b), which is what streamlining promises.

The first step that breaks any of these fails the build and is named in the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw_builds.execute import execute_model
from host.refusal import InputFileError, RefusedInput, read_npz

LOGIT_ATOL = 1e-3  # float32 rounding between torch and onnxruntime, on logits of size ~10..100
AFFINE_RTOL = 1e-4  # residual of the per-class affine fit, relative to the logit range


class GoldenFileError(RefusedInput):
    """golden.npz is missing, or an array in it has the wrong name, dtype or shape."""


class VerificationError(AssertionError):
    """A build step changed what the network computes; the message names the first such step."""


@dataclass(frozen=True)
class Golden:
    """The export stage's golden set: uint8 pixels, Brevitas logits, labels and test-set indices."""

    x: np.ndarray  # (N, C, H, W) uint8 raw pixels
    logits: np.ndarray  # (N, 10) float32 Brevitas outputs
    labels: np.ndarray  # (N,) int64 ground truth
    indices: np.ndarray  # (N,) int64 positions in the (subset) test set

    @property
    def top1(self) -> np.ndarray:
        """Brevitas' predicted class; argmax takes the lowest index among equal maxima."""
        return np.argmax(self.logits, axis=1)

    def subset(self, keep: np.ndarray) -> Golden:
        """The samples where ``keep`` (N,) bool is true."""
        return Golden(self.x[keep], self.logits[keep], self.labels[keep], self.indices[keep])

    def head(self, n: int | None) -> Golden:
        """The first ``n`` samples (all for None)."""
        if n is None or n >= len(self.x):
            return self
        return Golden(self.x[:n], self.logits[:n], self.labels[:n], self.indices[:n])


def load_golden(path: str | Path) -> Golden:
    """Read golden.npz and check its contract (see the export stage); errors name file and array."""
    path = Path(path)
    try:
        data = read_npz(path, "golden file", hint="made by the export stage")  # host.refusal: the one .npz reader
    except InputFileError as exc:
        raise GoldenFileError(str(exc)) from exc
    missing = [k for k in ("x", "logits", "labels", "indices") if k not in data]
    if missing:
        raise GoldenFileError(f"{path}: missing array {missing[0]!r} (needs x, logits, labels, indices)")
    arrays = {k: data[k] for k in ("x", "logits", "labels", "indices")}
    x, logits = arrays["x"], arrays["logits"]
    if x.dtype != np.uint8 or x.ndim != 4:
        raise GoldenFileError(f"{path}: 'x' must be uint8 (N, C, H, W), got {x.dtype} {x.shape}")
    n = len(x)
    if logits.ndim != 2 or len(logits) != n or not np.issubdtype(logits.dtype, np.floating):
        raise GoldenFileError(f"{path}: 'logits' must be float (N={n}, classes), got {logits.dtype} {logits.shape}")
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).any(axis=1).sum())
        raise GoldenFileError(f"{path}: 'logits' has non-finite values (NaN or inf) in {bad}/{n} rows")
    for key in ("labels", "indices"):
        if arrays[key].shape != (n,):
            raise GoldenFileError(f"{path}: {key!r} must have shape ({n},), got {arrays[key].shape}")
    if n == 0:
        raise GoldenFileError(f"{path}: the golden set is empty")
    return Golden(x, logits.astype(np.float32), arrays["labels"].astype(np.int64), arrays["indices"].astype(np.int64))


def score_tensor(model) -> str | None:
    """Name of the tensor that enters the final TopK / LabelSelect, if the graph ends in one."""
    out = model.graph.output[0].name
    producer = model.find_producer(out)
    if producer is not None and producer.op_type.split("_")[0] in ("TopK", "LabelSelect"):
        return producer.input[0]
    return None


def common_affine(previous: np.ndarray, scores: np.ndarray) -> list[str] | None:
    """[a, b] (exact fractions as strings) with scores == a * previous + b for every image and class, a > 0;
    None when no such map exists. One map for all classes keeps every ranking (top-1, ties) of the classes:
    a step may re-express the integer scores so (FINN's streamlining turns a bipolar dot product I into the
    popcount (I + K) / 2 when the graph has no output affine), but not change them otherwise (a wrap is no
    common affine map)."""
    from fractions import Fraction

    p, s = previous.astype(np.int64).ravel(), scores.astype(np.int64).ravel()
    if p.shape != s.shape or not len(p):
        return None
    j = int(np.argmax(p != p[0])) if np.any(p != p[0]) else None
    if j is None:  # previous scores all equal: the map is determined only if the new ones are too
        return None
    a = Fraction(int(s[j] - s[0]), int(p[j] - p[0]))
    if a <= 0 or not np.array_equal((s - s[0]) * int(p[j] - p[0]), (p - p[0]) * int(s[j] - s[0])):
        return None
    return [str(a), str(Fraction(int(s[0])) - a * int(p[0]))]


def affine_residual(scores: np.ndarray, logits: np.ndarray) -> float:
    """Largest residual of fitting logits[:, c] = a_c * scores[:, c] + b_c, relative to the logit range.

    Classes whose scores are constant over the set are checked for constant logits instead.
    """
    span = max(float(np.ptp(logits)), 1.0)
    worst = 0.0
    for c in range(scores.shape[1]):
        s, y = scores[:, c].astype(np.float64), logits[:, c].astype(np.float64)
        if np.ptp(s) == 0:
            worst = max(worst, float(np.ptp(y)))
            continue
        design = np.stack([s, np.ones_like(s)], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        if coef[0] <= 0:  # a non-increasing map would reorder the classes
            return float("inf")
        worst = max(worst, float(np.abs(design @ coef - y).max()))
    return worst / span


def check_step(
    step: str, model, golden: Golden, parent=None, previous_scores: np.ndarray | None = None,
    float_ties: np.ndarray | None = None,
) -> tuple[dict, np.ndarray | None]:
    """Run ``golden.x`` through ``model`` and compare with Brevitas; raise VerificationError on a mismatch.

    Returns the step's record for summary.json and its integer class scores (None where the
    graph does not expose them), for the next step's bit-exact comparison. ``float_ties`` (N,) bool
    marks golden images whose exact path has a pre-activation within Brevitas' float32 error bound
    of a boundary (hw_builds/exact_function.near_boundary_images): there Brevitas' float32 forward
    and the exact function may part, so those images are counted, not compared.
    """
    if float_ties is not None and float_ties.all():  # nothing to compare: every golden image is a float tie
        return {"step": step, "samples": 0, "top1_equal": 0, "float_tie_images": int(float_ties.sum())}, None
    if float_ties is not None and float_ties.any():
        keep = ~float_ties
        record, scores = check_step(step, model, golden.subset(keep), parent,
                                    None if previous_scores is None else previous_scores[keep])
        record["float_tie_images"] = int(float_ties.sum())
        if scores is None:
            return record, None
        full = np.zeros((len(golden.x), scores.shape[1]), dtype=scores.dtype)  # tie rows: never compared
        full[keep] = scores
        return record, full
    n = len(golden.x)
    name = score_tensor(model) if parent is None else None
    if name is not None:
        out, scores = execute_model(model, golden.x, capture=name)
    else:
        out, scores = execute_model(model, golden.x, parent=parent), None
    record: dict = {"step": step, "samples": n}
    if out.shape[1] == 1:  # class index from TopK / LabelSelect
        top1 = out[:, 0].astype(np.int64)
        record["output"] = "class_index"
        if not np.array_equal(out[:, 0], top1):
            raise VerificationError(f"step {step}: the class index output is not integer")
    else:
        top1 = np.argmax(out, axis=1)
        record["output"] = "logits"
        scores = out if scores is None else scores
    wrong = np.flatnonzero(top1 != golden.top1)
    record["top1_equal"] = int(n - len(wrong))
    if len(wrong):
        i = wrong[0]
        raise VerificationError(
            f"step {step}: top-1 differs from Brevitas on {len(wrong)}/{n} golden samples "
            f"(first: test index {golden.indices[i]}, Brevitas class {golden.top1[i]}, FINN class {top1[i]})"
        )
    integer_scores = None
    if scores is not None and scores.shape == golden.logits.shape:
        if np.array_equal(scores, np.round(scores)):
            integer_scores = scores.astype(np.int64)
        if integer_scores is None:
            err = float(np.abs(scores - golden.logits).max())
            record["scores"] = "float_logits"
            record["max_abs_logit_error"] = err
            if err > LOGIT_ATOL:
                raise VerificationError(f"step {step}: logits differ from Brevitas by up to {err:.3g} (> {LOGIT_ATOL})")
        else:
            record["scores"] = "integer"
            residual = affine_residual(integer_scores, golden.logits)
            record["affine_residual"] = residual
            if residual > AFFINE_RTOL:
                raise VerificationError(
                    f"step {step}: integer class scores are not an increasing affine image of Brevitas' logits "
                    f"(relative residual {residual:.3g})"
                )
            if previous_scores is not None:
                equal = bool(np.array_equal(previous_scores, integer_scores))
                record["scores_equal_previous_step"] = equal
                affine = None if equal else common_affine(previous_scores, integer_scores)
                if affine is not None:  # e.g. streamlining's bipolar dot product I -> popcount (I + K) / 2
                    record["scores_affine_of_previous_step"] = affine
                elif not equal:
                    diff = int((previous_scores != integer_scores).any(axis=1).sum())
                    raise VerificationError(f"step {step}: integer class scores changed on {diff}/{n} golden samples")
    return record, integer_scores
