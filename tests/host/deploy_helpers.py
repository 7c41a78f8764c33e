"""Builders for host/ tests that run in both environments (numpy only: no torch, no finn-plus).

``tfc_settings`` is the io_shape_dict finn-plus's MakePYNQDriver writes for a TFC accelerator
(UINT8 784-pixel input folded by SIMD 16, a LabelSelect class index out). ``ReferenceAccelerator``
is a test double for the validation logic only: it answers through the XNOR reference and the
driver packing, so validate.py's bookkeeping (agreement, partial batches, budgets, report) can be
checked where neither an FPGA nor finn-plus exists. The real backends are tested in
tests/host/test_board.py and tests/hw_builds/test_emulation.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from host.accelerator import LatencyEstimate
from host.package import make_package
from host.packing import DriverSettings, pack_rows, unpack_rows
from host.xnor import XnorReference
from host.xnor_format import save_xnor_model
from host.xnor_random import random_xnor_model

HOST_DIR = Path(__file__).resolve().parents[2] / "host"


def tfc_settings(simd: int = 16, odt: str = "UINT4") -> dict:
    """A settings.json as finn-plus writes it for a TFC accelerator (batch axis 1)."""
    return {
        "driver_information": {
            "driver_type": "FINNDMAOverlay",
            "platform": "zynq-iodma",
            "fclk_mhz": 100.0,
            "external_weights": False,
            "runtime_weights": False,
            "io_shape_dict": {
                "idt": ["DataType['UINT8']"],
                "odt": [f"DataType['{odt}']"],
                "idma_names": ["idma0"],
                "odma_names": ["odma0"],
                "ishape_normal": [[1, 784]],
                "ishape_folded": [[1, 784 // simd, simd]],
                "ishape_packed": [[1, 784 // simd, simd]],
                "oshape_normal": [[1, 1]],
                "oshape_folded": [[1, 1, 1]],
                "oshape_packed": [[1, 1, 1]],
                "num_inputs": 1,
                "num_outputs": 1,
            },
        },
        "experiment_information": {},
    }


def write_dataset(path: Path, n_test: int = 37, seed: int = 0) -> Path:
    """A prepared-data-set-shaped .npz (uint8 MNIST-like images; random, for plumbing tests)."""
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, size=10).astype(np.uint8),
        x_test=rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, size=n_test).astype(np.uint8),
    )
    return path


def build_package(
    tmp: Path,
    target: str = "emulation",
    n_test: int = 37,
    settings: dict | None = None,
    config: dict | None = None,
    seed: int = 0,
) -> Path:
    """A complete deployment package around a random XNOR model; returns the package dir."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "settings.json").write_text(json.dumps(settings or tfc_settings()))
    model = random_xnor_model([784, 64, 64, 64, 10], np.random.default_rng(seed), input_shape=(1, 28, 28))
    save_xnor_model(model, tmp / "xnor_model.npz")
    write_dataset(tmp / "data.npz", n_test=n_test, seed=seed)
    (tmp / "model.onnx").write_bytes(b"placeholder: these tests inject their accelerator")
    extra = {"emulation_model": tmp / "model.onnx"}
    if target == "hardware":
        (tmp / "finn-accel.bit").write_bytes(b"\x00\x09\x0f\xf0 not a real bitstream")
        (tmp / "finn-accel.hwh").write_text("<MODULES/>")
        extra["bitfile"] = tmp / "finn-accel.bit"
    return make_package(
        tmp / "deploy",
        model="tfc_w1a1",
        board="Pynq-Z1",
        target=target,
        settings_json=tmp / "settings.json",
        xnor_npz=tmp / "xnor_model.npz",
        dataset_npz=tmp / "data.npz",
        test_subset=None,
        validate_config=config or {"batch_size": 10, "latency_repeats": 5, "enforce_budgets": True,
                                   "budgets": {"accuracy_min_pct": 90.0, "latency_max_ms": 50.0, "power_max_mw": 100.0}},
        host_dir=HOST_DIR,
        **extra,
    )


class ReferenceAccelerator:
    """Test double: decodes the packed bytes, answers with the XNOR reference, packs the labels.

    ``flip`` lists test positions (in call order) whose answer is changed, to provoke disagreement.
    """

    backend = "emulation"

    def __init__(self, settings: DriverSettings, xnor_path: Path, flip: tuple[int, ...] = ()):
        self.settings = settings
        self.reference = XnorReference.load(xnor_path)
        self.flip = set(flip)
        self.seen = 0
        self.batch_sizes: list[int] = []

    def execute(self, packed: np.ndarray) -> np.ndarray:
        packed = self.settings.check_packed_input(packed)
        n = packed.shape[0]
        self.batch_sizes.append(n)
        x = unpack_rows(packed, self.settings.idt, self.settings.ishape_folded[-1]).reshape(n, 1, 28, 28)
        labels = self.reference.predict(x.astype(np.uint8))
        for i in range(n):
            if self.seen + i in self.flip:
                labels[i] = (labels[i] + 1) % 10
        self.seen += n
        return pack_rows(labels.reshape(n, *self.settings.oshape_folded), self.settings.odt)

    def latency_estimate(self) -> LatencyEstimate:
        return LatencyEstimate(fclk_mhz=100.0, critical_path_cycles=4140, max_cycles=896)

    def close(self) -> None:
        pass
