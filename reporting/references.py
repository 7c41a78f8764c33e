"""Published figures to set beside ours (cited in /work/shared/TOOLCHAIN.md; each row names its source).

They are goals and sanity marks, not like-for-like comparisons: the published accuracies come from
up to 1000 epochs of training, the throughputs from bitfiles measured on boards, ours from a short
recipe and FINN's cycle estimates. The report says so beside the table.
"""

from __future__ import annotations

from dataclasses import dataclass

BREVITAS_BNN_PYNQ = "Brevitas bnn_pynq trained accuracy"


@dataclass(frozen=True)
class Reference:
    """One published figure for one model (on the data set the model was published on)."""

    model: str
    dataset: str  # the data set the figure is on (mnist | cifar10)
    source: str
    accuracy_pct: float | None = None
    throughput_fps: float | None = None
    latency_us: float | None = None
    board: str | None = None


# Brevitas bnn_pynq trained accuracies (MNIST for the MLPs, CIFAR-10 for CNV).
_ACCURACY = {
    "tfc_w1a1": 93.17, "tfc_w1a2": 94.79, "tfc_w2a2": 96.60,
    "sfc_w1a1": 97.81, "sfc_w1a2": 98.31, "sfc_w2a2": 98.66,
    "lfc_w1a1": 98.88, "lfc_w1a2": 98.99,
    "cnv_w1a1": 84.22, "cnv_w1a2": 87.80, "cnv_w2a2": 89.03,
}

REFERENCES: tuple[Reference, ...] = (
    *(
        Reference(m, "cifar10" if m.startswith("cnv") else "mnist", BREVITAS_BNN_PYNQ, accuracy_pct=a)
        for m, a in _ACCURACY.items()
    ),
    Reference("tfc_w1a1", "mnist", "finn-examples on board (100 MHz)", accuracy_pct=92.96, throughput_fps=837_019),
    Reference("cnv_w1a1", "cifar10", "finn-examples on board", accuracy_pct=84.19, throughput_fps=3_020),
    # 2.80 us/image is 1 / throughput, not a latency, so no latency_us here.
    Reference("lfc_w1a1", "mnist", "BNN-PYNQ on Pynq", accuracy_pct=98.40, throughput_fps=356_633),
    Reference("sfc_w1a1", "mnist", "FINN paper (ZC706)", accuracy_pct=95.8, throughput_fps=12_300_000, latency_us=0.31, board="ZC706"),
    Reference("cnv_w1a1", "cifar10", "FINN paper (ZC706)", throughput_fps=21_906, latency_us=283.0, board="ZC706"),
)


def reference_accuracy(model: str, dataset: str) -> Reference | None:
    """Brevitas' trained accuracy for ``model``, only when ours is on the same data set."""
    return next((r for r in REFERENCES if r.model == model and r.dataset == dataset and r.source == BREVITAS_BNN_PYNQ), None)


def reference_throughput(model: str, dataset: str) -> Reference | None:
    """The first published on-board throughput for ``model`` (Pynq boards first, then the FINN paper)."""
    return next((r for r in REFERENCES if r.model == model and r.dataset == dataset and r.throughput_fps), None)


def throughput_references() -> list[Reference]:
    """Every published point with both accuracy and throughput: the grey marks of the Pareto plot."""
    return [r for r in REFERENCES if r.throughput_fps and r.accuracy_pct]
