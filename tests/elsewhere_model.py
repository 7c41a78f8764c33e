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
    return _adam_steps(model, data, PIXEL_SCALE, PIXEL_BIAS, steps, seed)


def _adam_steps(model: nn.Module, data: dict[str, np.ndarray], scale: float, bias: float, steps: int, seed: int,
                clip: float | None = None) -> nn.Module:
    """``steps`` Adam steps (lr 0.01, 100 random training images each) on uint8 (N, H, W) images mapped to
    pixel * scale + bias; weights clipped to [-clip, clip] after each step where ``clip`` is set; eval mode."""
    x = torch.from_numpy(data["x_train"][:, None].astype(np.float32)) * scale + bias
    y = torch.from_numpy(data["y_train"].astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), size=min(100, len(x)), replace=False))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if clip is not None:
            model.clip_weights(-clip, clip)
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


def export_elsewhere_finn_onnx(qonnx_path: Path, path: Path) -> Path:
    """The FINN-ONNX of a QONNX file as FINN writes it (qonnx's cleanup, then FINN's ConvertQONNXtoFINN: what
    ``step_qonnx_to_finn`` makes, and what an older FINN flow exported): MultiThreshold activations, weights
    as BIPOLAR-annotated constants."""
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    cleanup_model(ModelWrapper(str(qonnx_path))).transform(ConvertQONNXtoFINN()).save(str(path))
    return path


# FINN's own reference networks as Brevitas ships them (brevitas_examples.bnn_pynq: the TFC / SFC / LFC / CNV of
# the FINN paper, code this project did not write). Their forward maps x in [0, 1] as 2x - 1 itself, so the
# import declares x = pixel / 255. Their pretrained weights are downloaded from GitHub, so here they are trained
# briefly instead (with the examples' own weight clipping to [-1, 1]).
BNN_PYNQ_PIXEL_SCALE, BNN_PYNQ_PIXEL_BIAS = 1.0 / 255.0, 0.0


def bnn_pynq_tfc(classes: int = CLASSES) -> nn.Module:
    """brevitas_examples' TFC_1W1A (784-64-64-64, binary weights, activations and input, TensorNorm out), built
    from its shipped tfc_1w1a.ini with NUM_CLASSES set to ``classes``."""
    import configparser
    from importlib.resources import files

    from brevitas_examples.bnn_pynq.models.FC import fc

    cfg = configparser.ConfigParser()
    cfg.read_string(files("brevitas_examples.bnn_pynq.cfg").joinpath("tfc_1w1a.ini").read_text())
    cfg["MODEL"]["NUM_CLASSES"] = str(classes)
    return fc(cfg)


def train_bnn_pynq(model: nn.Module, data: dict[str, np.ndarray], steps: int = 60, seed: int = 0) -> nn.Module:
    """A few Adam steps of a brevitas_examples.bnn_pynq network on uint8 (N, H, W) images scaled to [0, 1] (its
    own forward applies 2x - 1), clipping weights to [-1, 1] after each as its trainer does; eval mode."""
    torch.manual_seed(seed)
    return _adam_steps(model, data, BNN_PYNQ_PIXEL_SCALE, BNN_PYNQ_PIXEL_BIAS, steps, seed, clip=1.0)


def write_user_data(workdir: Path, mnist_npz: Path, train_images: int | None = 3000, steps: int = 60,
                    bnn_pynq: bool = False) -> Path:
    """A user's files in ``workdir``/user_data, as tests/workflow/ci_user.yaml (and user_full.yaml) declare them:
    digits5.npz (digits 0-4 of the prepared MNIST ``mnist_npz``, NCHW, with class names), elsewhere.onnx (the
    network above trained for ``steps`` Adam steps on the first ``train_images`` training images, None: all;
    Brevitas' QONNX), elsewhere_finn.onnx (FINN's FINN-ONNX of that file) and, with ``bnn_pynq``,
    bnn_pynq_tfc.onnx (brevitas_examples' TFC_1W1A trained the same way; Brevitas' QONNX)."""
    from models.datasets import load_npz

    folder = Path(workdir) / "user_data"
    folder.mkdir(parents=True, exist_ok=True)
    data = digits5(load_npz(mnist_npz))
    np.savez(folder / "digits5.npz", x_train=data["x_train"][:, None], y_train=data["y_train"],
             x_test=data["x_test"][:, None], y_test=data["y_test"], class_names=data["class_names"])
    small = {k: v[:train_images] for k, v in data.items() if k != "class_names"}
    qonnx = export_elsewhere_qonnx(train_elsewhere(small, steps=steps), folder / "elsewhere.onnx")
    export_elsewhere_finn_onnx(qonnx, folder / "elsewhere_finn.onnx")
    if bnn_pynq:
        export_elsewhere_qonnx(train_bnn_pynq(bnn_pynq_tfc(), small, steps=steps), folder / "bnn_pynq_tfc.onnx")
    return folder


if __name__ == "__main__":  # the measured run's files: python tests/elsewhere_model.py WORKDIR MNIST_NPZ [STEPS]
    import sys

    write_user_data(Path(sys.argv[1]), Path(sys.argv[2]), train_images=None,
                    steps=int(sys.argv[3]) if len(sys.argv) > 3 else 300, bnn_pynq=True)
