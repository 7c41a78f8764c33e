"""Fixtures of the hw_builds/ tests: a real tfc_w1a1 (Brevitas, exported by models.export), its FINN front end and build.

The network is random-init with batch-norm statistics taken from a few training-mode passes and
seeded affine parameters, so that its thresholds are spread out like a trained model's (and one
neuron is always on, to exercise bnnflow's threshold clipping). No data set is needed: the golden
inputs are seeded random pixels, and what matters here is that FINN computes what Brevitas does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

N_GOLDEN = 40


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_tfc(seed: int = 0) -> torch.nn.Module:
    """A tfc_w1a1 with realistic, varied batch-norm thresholds (eval mode)."""
    from models.topologies import build_model

    torch.manual_seed(seed)
    model = build_model("tfc_w1a1")
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):  # running statistics from pixel batches, as training would set them
            model(torch.randint(0, 256, (64, 1, 28, 28), generator=gen).float())
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.weight.copy_(torch.empty(bn.num_features).uniform_(0.3, 1.5, generator=gen))
            bn.bias.copy_(torch.empty(bn.num_features).uniform_(-0.5, 0.5, generator=gen))
        first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
        first_bn.bias[0] = 50.0  # neuron 0 of layer 1 always fires: its threshold lies below 0
    return model.eval()


def export_with_golden(model: torch.nn.Module, out_dir: Path, n: int = N_GOLDEN, seed: int = 1) -> tuple[Path, Path]:
    """model.onnx (models.export) and golden.npz (Brevitas logits on seeded random pixels)."""
    from models.export import export_qonnx

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_qonnx(model, out_dir / "model.onnx", (1, 1, 28, 28))
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).float()).numpy().astype(np.float32)
    golden = out_dir / "golden.npz"
    np.savez(golden, x=x, logits=logits, labels=np.zeros(n, np.int64), indices=np.arange(n, dtype=np.int64))
    return onnx_path, golden


@pytest.fixture(scope="session")
def exported_tfc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.onnx, golden.npz) of the fixture network."""
    return export_with_golden(make_tfc(), tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def frontend_tfc(exported_tfc, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(front-end folder, golden.npz): the board-independent FINN front end of the fixture network."""
    from hw_builds.frontend import build_frontend

    onnx_path, golden = exported_tfc
    out = tmp_path_factory.mktemp("frontend") / "tfc_w1a1" / "frontend"
    build_frontend(onnx_path, golden, out, "tfc_w1a1", progress=False)
    return out, golden


@pytest.fixture(scope="session")
def pynq_z1_build(frontend_tfc, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The emulation build of the fixture network for Pynq-Z1, from its front end: (output dir, summary)."""
    from hw_builds.compile import compile_finn

    frontend, golden = frontend_tfc
    out = tmp_path_factory.mktemp("hw_builds") / "tfc_w1a1" / "Pynq-Z1"
    summary = compile_finn(frontend, golden, out, "Pynq-Z1", model_name="tfc_w1a1", progress=False)
    return out, summary
