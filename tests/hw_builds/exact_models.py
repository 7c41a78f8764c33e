"""Small Brevitas MLPs with chosen batch-norm parameters, and the four-way check that the tests of
the exact thresholds share: XNOR reference = FINN's streamlined and HW graphs = the exact function on
every layer, and every difference from Brevitas a proven float tie (hw_builds.xnor_verify.verify_xnor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.topologies import FAMILIES, Topology


def use_widths(monkeypatch, widths: tuple[int, ...]) -> None:
    """Make the ``tfc`` family an MLP with these hidden widths for the rest of the test."""
    monkeypatch.setitem(FAMILIES, "tfc", Topology(input_shape=(1, 28, 28), in_bit_width=None, conv=(), fc=widths))


def random_model(name: str, seed: int, gamma_range=(-2.0, 2.0)) -> torch.nn.Module:
    """A model of the (patched) family with random weights and random, signed batch-norm parameters."""
    from models.topologies import build_model

    torch.manual_seed(seed)
    model = build_model(name)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in batch_norms(model):
            n = bn.num_features
            bn.weight.copy_(torch.empty(n).uniform_(*gamma_range, generator=gen))
            bn.bias.copy_(torch.empty(n).uniform_(-1.0, 1.0, generator=gen))
            bn.running_mean.copy_(torch.empty(n).uniform_(-6.0, 6.0, generator=gen))
            bn.running_var.copy_(torch.empty(n).uniform_(0.5, 30.0, generator=gen))
    return model.eval()


def batch_norms(model) -> list[torch.nn.BatchNorm1d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]


def dot_products(model, x_uint8: np.ndarray) -> list[np.ndarray]:
    """Brevitas' integer dot products I (N, M) of every quantized layer on these images (exact in float32)."""
    from brevitas.nn import QuantLinear

    out, handles = [], []
    for layer in (m for m in model.modules() if isinstance(m, QuantLinear)):
        handles.append(layer.register_forward_hook(
            lambda _m, _a, y: out.append(getattr(y, "value", y).detach().numpy().copy())))
    with torch.no_grad():
        model(torch.from_numpy(x_uint8.astype(np.float32)))
    for h in handles:
        h.remove()
    return [np.rint(v).astype(np.int64) for v in out]


def brevitas_bn_out(model, x_uint8: np.ndarray, layer: int) -> np.ndarray:
    """float32 (N, M): what Brevitas' batch norm of hidden layer ``layer`` outputs on these images."""
    bn = batch_norms(model)[layer]
    got = []
    h = bn.register_forward_hook(lambda _m, _a, y: got.append(y.detach().numpy().copy()))
    with torch.no_grad():
        model(torch.from_numpy(x_uint8.astype(np.float32)))
    h.remove()
    return got[0]


def check_everything(model, name: str, x_test: np.ndarray, out: Path) -> dict:
    """Export, FINN front end, XNOR export, exact function, verify_xnor; assert the exact function = the reference.

    x_test: (N, 28, 28) uint8. Returns verify_xnor's report plus ``net`` (the ExactNetwork),
    ``exact`` (exact_forward on the images) and ``xnor`` (the XnorModel).
    """
    from host.xnor import XnorReference
    from host.xnor_format import load_xnor_model
    from hw_builds.exact_function import exact_forward, exact_network_from_file
    from hw_builds.frontend import build_frontend
    from hw_builds.xnor_export import export_xnor
    from hw_builds.xnor_verify import verify_xnor
    from models.checkpoint import save_checkpoint
    from models.export import export_qonnx

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_qonnx(model, out / "model.onnx", (1, 1, 28, 28))
    save_checkpoint(model, out / "checkpoint.pt")
    data = out / "data.npz"
    y = np.zeros(len(x_test), np.uint8)
    np.savez(data, x_train=x_test[:1], y_train=y[:1], x_test=x_test, y_test=y)
    # golden set of the front end's step checks: Brevitas' logits on up to 20 images that are not float ties
    # (the crafted ties, where float32 Brevitas parts from the exact function, are verify_xnor's to report)
    from hw_builds.float_ties import golden_float_ties

    pool = x_test
    keep = np.flatnonzero(~golden_float_ties(onnx_path, pool[:, None]))[:20]
    keep = keep if len(keep) else np.arange(min(20, len(pool)))  # all ties: the front end's checks skip them
    with torch.no_grad():
        logits = model(torch.from_numpy(pool[keep, None].astype(np.float32))).numpy().astype(np.float32)
    np.savez(out / "golden.npz", x=pool[keep, None], logits=logits, labels=np.zeros(len(keep), np.int64),
             indices=keep.astype(np.int64))
    build_frontend(onnx_path, out / "golden.npz", out / "frontend", name, progress=False)
    paths = {k: out / "frontend" / f"{k}.onnx" for k in ("streamlined", "hw")}
    export_xnor(out / "frontend", out / "xnor_model.npz", name)
    report = verify_xnor(out / "xnor_model.npz", out / "checkpoint.pt", paths["streamlined"], paths["hw"], data,
                         out / "verify.json", name)
    net = exact_network_from_file(onnx_path)
    x = x_test[:, None]
    exact = exact_forward(net, x)
    xnor = load_xnor_model(out / "xnor_model.npz")
    trace = XnorReference(xnor).trace(x)
    for i, layer in enumerate(xnor.layers):  # every layer's input codes: reference = exact function
        codes = exact["input_codes"] if i == 0 else exact[f"layer{i - 1}.codes"]
        quant = net.input_quant if i == 0 else net.layers[i - 1].out_quant
        want = (codes + 1) // 2 if quant.kind == "bipolar" else codes - quant.qmin
        np.testing.assert_array_equal(trace[f"layer{i}.in_bits"].reshape(len(x), -1), want.reshape(len(x), -1),
                                      err_msg=f"layer{i}.in_bits: XNOR reference != exact function")
    np.testing.assert_array_equal(np.argmax(trace["logits"], axis=1), np.argmax(exact["I_last"], axis=1))
    return {**report, "net": net, "exact": exact, "xnor": xnor}
