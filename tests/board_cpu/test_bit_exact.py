"""The XNOR reference and host/'s packing on ARMv7 and AArch64 (QEMU) equal x86-64, bit for bit.

For every family the reference covers (TFC, SFC, LFC, CNV as w1a1, w1a2, w2a2; random weights and
thresholds from host/xnor_random.py, on real MNIST test images, padded to 3x32x32 for CNV) the ARM
root file system computes every layer's input codes and integer accumulators, the logits, the fast
path's accumulators and the predictions with Debian's numpy 1.24 (lookup-table popcount); x86-64
computes the same with this environment's numpy (np.bitwise_count) and, where numba imports, its
compiled kernels. Every array must be equal, dtype and shape included. The same run checks the
popcount table on random words, bit/word packing, the driver packing of every FINN type host/ packs,
DriverSettings I/O, and that a tampered model is refused with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cross_arch import FINN_TYPES, compute, environment
from deploy_helpers import tfc_settings
from qemu_rootfs import ARCHES, REPO, copy_host, run_in_rootfs, workdir_in

from host.packing import FinnType
from host.xnor import available_backends
from host.xnor_format import save_xnor_model
from host.xnor_random import FAMILIES, random_family_model

pytestmark = pytest.mark.board_cpu

# QEMU runs numpy code several times slower than this CPU: 64 MNIST images per MLP, 4 for CNV (its
# 8-bit first layer and six convolutions dominate), enough for every layer's codes to vary.
MLP_IMAGES, CNV_IMAGES = 64, 4
PRECISIONS = ((1, 1), (1, 2), (2, 2))


@pytest.fixture(scope="module")
def cases(full_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs of cross_arch.py: 12 random family models with their images, words, bits, values."""
    folder = tmp_path_factory.mktemp("cross_arch_cases")
    with np.load(full_mnist) as z:
        images = z["x_test"]  # (10000, 28, 28) uint8
    rng = np.random.default_rng(20)
    pick = np.sort(rng.choice(len(images), size=MLP_IMAGES, replace=False))
    for seed, family in enumerate(FAMILIES):
        for wb, ab in PRECISIONS:
            name = f"{family}_w{wb}a{ab}"
            save_xnor_model(random_family_model(family, wb, ab, np.random.default_rng([20, seed, wb, ab])),
                            folder / f"{name}.npz")
            if family == "cnv":  # MNIST padded to 3x32x32, as the CNV of this project is trained
                x = np.repeat(np.pad(images[pick[:CNV_IMAGES]], ((0, 0), (2, 2), (2, 2)))[:, None], 3, axis=1)
            else:
                x = images[pick][:, None]  # (N, 1, 28, 28)
            np.save(folder / f"{name}.images.npy", np.ascontiguousarray(x))
    words = rng.integers(0, 2**64, size=(257, 33), dtype=np.uint64)
    words[0, :4] = [0, 2**64 - 1, 1 << 63, 0x5555555555555555]  # the edges of the 16-bit table's pieces
    np.save(folder / "words.npy", words)
    np.save(folder / "bits.npy", rng.integers(0, 2, size=(9, 203), dtype=np.uint8))
    for name in FINN_TYPES:
        t = FinnType(name)
        v = rng.integers(t.min, t.max + 1, size=(5, 7, 37))
        np.save(folder / f"values_{name}.npy", np.where(v == 0, -1, v) if name == "BIPOLAR" else v)
    (folder / "settings.json").write_text(json.dumps(tfc_settings(simd=49, odt="UINT4")))
    np.save(folder / "pixels.npy", images[pick[:10]][:, None])
    np.save(folder / "packed_out.npy", rng.integers(0, 16, size=(10, 1, 1), dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def x86(cases: Path) -> dict[str, np.ndarray]:
    return compute(cases, backend="numpy")


def test_x86_backends_agree_before_comparing_with_arm(cases: Path, x86: dict[str, np.ndarray]) -> None:
    """The x86-64 baseline: numba (where it imports) == numpy; the models' codes really vary."""
    if "numba" in available_backends():
        numba = compute(cases, backend="numba")
        for key in x86:
            np.testing.assert_array_equal(numba[key], x86[key], err_msg=key)
    for family in FAMILIES:
        for wb, ab in PRECISIONS:
            name = f"{family}_w{wb}a{ab}"
            hidden = [k for k in x86 if k.startswith(f"{name}/trace/layer") and k.endswith(".in_bits")][1:]
            assert all(len(np.unique(x86[k])) == 2**ab for k in hidden), name  # every activation code occurs


def test_arm_equals_x86(board_root: tuple[str, Path], cases: Path, x86: dict[str, np.ndarray]) -> None:
    arch_name, root = board_root
    with workdir_in(root) as (outside, inside):
        copy_host(outside)
        (outside / "cross_arch.py").write_bytes((REPO / "tests" / "board_cpu" / "cross_arch.py").read_bytes())
        (outside / "cases").mkdir()
        for f in cases.iterdir():
            (outside / "cases" / f.name).write_bytes(f.read_bytes())
        res = run_in_rootfs(root, ["python3", "cross_arch.py", "cases", "arm.npz"], cwd=inside, timeout=1500)
        assert res.returncode == 0, f"{arch_name}: cross_arch.py failed:\n{res.stderr[-3000:]}"
        env = json.loads(res.stdout.strip().splitlines()[-1])
        with np.load(outside / "arm.npz", allow_pickle=False) as z:
            arm = {k: z[k] for k in z.files}
    arch = ARCHES[arch_name]
    assert env["machine"] == arch.machine and env["intp_bits"] == arch.intp_bits, env
    assert not env["has_bitwise_count"] and env["numpy"].startswith("1."), env  # the board's numpy: table popcount
    assert environment()["machine"] == "x86_64"
    assert sorted(arm) == sorted(x86)
    differing = [k for k in x86 if arm[k].dtype != x86[k].dtype or arm[k].shape != x86[k].shape
                 or not np.array_equal(arm[k], x86[k])]
    assert not differing, f"{arch_name} differs from x86-64 in {len(differing)} arrays, first {differing[:5]}"
    assert "sha256" in str(arm["manifest/tampered_verdict"]), arm["manifest/tampered_verdict"]
    # the comparison covered every family and precision, every layer
    assert {k.split("/")[0] for k in arm if k.endswith("/predict")} == {
        f"{f}_w{w}a{a}" for f in FAMILIES for w, a in PRECISIONS}
