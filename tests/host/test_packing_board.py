"""Board environment: host/packing.py byte for byte against finn-plus-driver's own functions.

finn-plus-driver needs numpy < 2, so it lives only in the board environment (.venv-board, the
PYNQ image's numpy). These tests are skipped in the main environment; CI runs tests/host a second
time in the board environment, where they run.
"""

from __future__ import annotations

import numpy as np
import pytest
from deploy_helpers import tfc_settings

from host.packing import DriverSettings, FinnType, pack_rows, unpack_rows

pytestmark = pytest.mark.board_env
driver_packing = pytest.importorskip("finn_plus_driver.packing", reason="finn-plus-driver is in the board environment only")

TYPES = ["BINARY", "BIPOLAR", "UINT2", "INT2", "INT3", "UINT4", "UINT8", "INT8", "UINT16", "INT16"]


@pytest.mark.parametrize("name", TYPES)
def test_pack_and_unpack_equal_finn_plus_driver(name: str) -> None:
    from qonnx.core.datatype import DataType

    t, dt, rng = FinnType(name), DataType[name], np.random.default_rng(4)
    for shape in [(3, 7), (2, 4, 16), (8, 49, 16), (5, 1), (2, 3, 9)]:
        v = rng.integers(t.min, t.max + 1, size=shape)
        if name == "BIPOLAR":
            v = np.where(v == 0, -1, v)
        ref = driver_packing.finnpy_to_packed_bytearray(
            v.astype(np.float32), dt, reverse_inner=True, reverse_endian=True
        )
        mine = pack_rows(v, t)
        assert mine.tobytes() == np.ascontiguousarray(ref).tobytes(), f"{name} {shape}"
        back = driver_packing.packed_bytearray_to_finnpy(
            np.ascontiguousarray(ref), dt, shape, reverse_inner=True, reverse_endian=True
        )
        np.testing.assert_array_equal(back, unpack_rows(mine, t, shape[-1]))


def _driver_overlay(settings: dict, batch_size: int):
    """finn-plus-driver's FINNDMAOverlay without a device: its real fold/pack/unpack methods.

    ``__init__`` would load a bitstream; the I/O methods only need io_shape_dict and the batch size,
    which we set through the class's own property setter (it parses the DataType strings).
    """
    from finn_plus_driver.overlays.dma import FINNDMAOverlay

    overlay = object.__new__(FINNDMAOverlay)
    overlay.io_shape_dict = {k: v for k, v in settings["driver_information"]["io_shape_dict"].items()}
    overlay._batch_size = batch_size  # the setter would allocate DMA buffers
    return overlay


@pytest.mark.parametrize("simd,odt", [(16, "UINT4"), (49, "UINT4"), (8, "UINT8")])
def test_settings_io_equals_finndmaoverlay_methods(simd: int, odt: str) -> None:
    """DriverSettings.pack_input/unpack_output == the overlay's fold+pack / unpack+unfold."""
    settings = tfc_settings(simd=simd, odt=odt)
    n = 6
    overlay = _driver_overlay(settings, n)
    s = DriverSettings.from_dict(settings)
    x = np.random.default_rng(5).integers(0, 256, size=(n, 784)).astype(np.uint8)
    theirs = overlay.pack_input(overlay.fold_input(x))
    assert s.pack_input(x).tobytes() == np.ascontiguousarray(theirs).tobytes()
    labels = np.random.default_rng(6).integers(0, 10, size=(n, 1, 1))
    packed_out = pack_rows(labels, s.odt)
    theirs_out = overlay.unfold_output(overlay.unpack_output(packed_out))
    np.testing.assert_array_equal(theirs_out, s.unpack_output(packed_out))
    assert theirs_out.reshape(-1).tolist() == labels.reshape(-1).tolist()
