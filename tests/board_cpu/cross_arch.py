"""What the bit-exactness test computes, identically on x86-64 (in process) and on ARM (as a script in the root).

``python3 cross_arch.py CASES OUT`` (cwd holding a copy of host/): for every ``CASES/<name>.npz`` model
(the xnor_model format) with its images ``CASES/<name>.images.npy`` it writes every layer's input codes
and accumulators and the logits (:meth:`XnorReference.trace`), the fast path's last accumulators in
odd-sized batches (the partial last batch included) and the predictions; then the lookup-table popcount
of ``CASES/words.npy``, bit and word packing of ``CASES/bits.npy``, the driver packing (``pack_rows`` /
``unpack_rows``) of ``CASES/values_<TYPE>.npy`` for every FINN type host/ packs, ``DriverSettings``
I/O of ``CASES/settings.json``, and the manifest checks' verdicts on a tampered model. All go into one
``OUT`` .npz (keys ``<case>/<what>``), which the test compares array by array, dtype included, with
the same function's result on x86-64. numpy and host/ only: this file runs inside the ARM root file systems.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from host.packing import DriverSettings, FinnType, pack_rows, unpack_rows
from host.xnor import XnorReference, bytes_to_words, pack_bits, popcount, unpack_bits
from host.xnor_format import XnorFormatError, load_xnor_model

FINN_TYPES = ("BINARY", "BIPOLAR", "UINT2", "INT2", "INT3", "UINT4", "UINT8", "INT8", "UINT16", "INT16")
ODD_BATCH = 7  # the fast path in batches of 7: every model's sample ends in a partial batch


def _models(cases: Path, out: dict[str, np.ndarray], backend: str) -> None:
    for path in sorted(cases.glob("*.npz")):
        name = path.stem
        x = np.load(cases / f"{name}.images.npy")
        ref = XnorReference(load_xnor_model(path), backend=backend)  # load checks every array's sha256
        for key, value in ref.trace(x).items():
            out[f"{name}/trace/{key}"] = value
        out[f"{name}/final_acc"] = ref.final_accumulators(x, batch_size=ODD_BATCH)
        out[f"{name}/predict"] = ref.predict(x, batch_size=ODD_BATCH)


def _bits_and_words(cases: Path, out: dict[str, np.ndarray]) -> None:
    words = np.load(cases / "words.npy")  # (R, C) uint64
    out["popcount/table"] = popcount(words, use_table=True)
    out["popcount/default"] = popcount(words)  # np.bitwise_count on numpy >= 2, the table before
    bits = np.load(cases / "bits.npy")  # (N, K) 0/1 uint8
    packed = pack_bits(bits)
    out["bits/pack_bits"] = packed
    out["bits/unpack_bits"] = unpack_bits(packed, bits.shape[1])
    out["bits/bytes_to_words"] = bytes_to_words(np.packbits(bits, axis=1, bitorder="little"), bits.shape[1])
    for name in FINN_TYPES:
        values = np.load(cases / f"values_{name}.npy")  # (A, B, C) int64 in the type's range
        t = FinnType(name)
        rows = pack_rows(values, t)
        out[f"packing/{name}/pack_rows"] = rows
        out[f"packing/{name}/unpack_rows"] = unpack_rows(rows, t, values.shape[-1])
    settings = DriverSettings.from_dict(json.loads((cases / "settings.json").read_text()))
    pixels = np.load(cases / "pixels.npy")  # (N, 1, 28, 28) uint8
    packed_in = settings.pack_input(settings.from_nchw(pixels))
    out["driver/pack_input"] = packed_in
    out["driver/unpack_output"] = settings.unpack_output(np.load(cases / "packed_out.npy"))


def _manifest_checks(cases: Path, out: dict[str, np.ndarray]) -> None:
    """Verdicts of load_xnor_model on an intact and on a tampered model (one weight bit flipped)."""
    source = sorted(cases.glob("*.npz"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        intact = Path(tmp) / "intact.npz"
        shutil.copy(source, intact)
        model = load_xnor_model(intact)
        arrays = dict(np.load(intact, allow_pickle=False))
        key = next(k for k in arrays if k.endswith("weights"))  # a layer's packed weights
        arrays[key] = arrays[key].copy()
        arrays[key].flat[0] ^= 1
        tampered = Path(tmp) / "tampered.npz"
        with open(tampered, "wb") as f:
            np.savez(f, **arrays)
        try:
            load_xnor_model(tampered)
            verdict = "accepted"
        except XnorFormatError as err:
            verdict = str(err).replace(str(tampered), "<tampered>")
    out["manifest/intact_layers"] = np.array(len(model.layers), dtype=np.int64)
    out["manifest/tampered_verdict"] = np.array(verdict)


def compute(cases: Path, backend: str = "numpy") -> dict[str, np.ndarray]:
    """Everything listed in the module doc, by key; ``backend`` is the XNOR reference's ("numpy" on ARM)."""
    out: dict[str, np.ndarray] = {}
    _models(cases, out, backend)
    _bits_and_words(cases, out)
    _manifest_checks(cases, out)
    return out


def environment() -> dict:
    """The CPU and numpy this ran on (np.intp is 32-bit on ARMv7)."""
    return {"machine": platform.machine(), "numpy": np.__version__, "intp_bits": np.dtype(np.intp).itemsize * 8,
            "python": platform.python_version(), "has_bitwise_count": hasattr(np, "bitwise_count")}


if __name__ == "__main__":
    cases_dir, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    results = compute(cases_dir)
    with open(out_path, "wb") as f:
        np.savez(f, **results)
    print(json.dumps(environment()))
