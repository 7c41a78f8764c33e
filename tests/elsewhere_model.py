"""A model "made elsewhere" for the import tests (issue 12): a Brevitas network written here with Brevitas' own
stock quantizers (not bnnflow's models/ topologies or quantizers), odd widths 100 and 37, trained briefly on the
digits 0-4 of real MNIST, and exported by Brevitas to QONNX (and, through FINN, to FINN-ONNX).

Its input is x = pixel * 2/255 - 1 (the import declares that mapping); its output is 5 class scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

PIXEL_SCALE, PIXEL_BIAS = 2.0 / 255.0, -1.0
CLASSES = 5


class ElsewhereMLP(nn.Module):
    """784 -> 100 -> 37 -> 5, binary weights and activations (Brevitas' SignedBinary*PerTensorConst)."""

    def __init__(self, widths: tuple[int, ...] = (100, 37), weight_scale: float = 1.0) -> None:
        super().__init__()
        from brevitas.nn import QuantIdentity, QuantLinear
        from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

        # Brevitas' stock binary weights have scale 0.1; the exact definition (and so an import) takes scale 1
        weight_quant = SignedBinaryWeightPerTensorConst.let(scaling_const=weight_scale)

        self.input_quant = QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        layers: list[nn.Module] = []
        width_in = 784
        for width in widths:
            layers += [QuantLinear(width_in, width, bias=False, weight_quant=weight_quant),
                       nn.BatchNorm1d(width), QuantIdentity(act_quant=SignedBinaryActPerTensorConst)]
            width_in = width
        layers.append(QuantLinear(width_in, CLASSES, bias=False, weight_quant=weight_quant))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float32 (N, 1, 28, 28) in [-1, 1] -> (N, 5) class scores."""
        return self.body(self.input_quant(x.reshape(x.shape[0], -1)))


def digits5(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The digits 0-4 of a prepared MNIST set (NHW uint8 images, int64 labels), with class names."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        keep = arrays[f"y_{split}"] < CLASSES
        out[f"x_{split}"] = arrays[f"x_{split}"][keep]
        out[f"y_{split}"] = arrays[f"y_{split}"][keep].astype(np.int64)
    out["class_names"] = np.array(["zero", "one", "two", "three", "four"])
    return out


def train_elsewhere(data: dict[str, np.ndarray], steps: int = 60, seed: int = 0, **kwargs) -> ElsewhereMLP:
    """A few Adam steps on the training images (enough to be far above chance, not for accuracy); eval mode."""
    torch.manual_seed(seed)
    model = ElsewhereMLP(**kwargs)
    x = torch.from_numpy(data["x_train"][:, None].astype(np.float32)) * PIXEL_SCALE + PIXEL_BIAS
    y = torch.from_numpy(data["y_train"].astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), size=min(100, len(x)), replace=False))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def export_elsewhere_qonnx(model: nn.Module, path: Path) -> Path:
    """Brevitas' own QONNX export (TorchScript exporter, one file), input (1, 1, 28, 28)."""
    import warnings

    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 1, 28, 28), str(path), dynamo=False)
    return path


def forward_pixels(model: nn.Module, x_uint8: np.ndarray) -> np.ndarray:
    """Brevitas' forward on uint8 (N, 28, 28) pixels through the declared mapping -> float32 (N, 5)."""
    with torch.no_grad():
        x = torch.from_numpy(x_uint8[:, None].astype(np.float32)) * PIXEL_SCALE + PIXEL_BIAS
        return model(x).numpy()
