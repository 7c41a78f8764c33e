"""host/packing.py: hand-checked layouts, round trips, settings.json checks, and FINN's own packer.

Runs in both environments; the comparison with finn-plus's ``finn.util.data_packing`` runs where
finn-plus is installed (the main environment), the one with finn-plus-driver's packer in
test_packing_board.py (the board environment).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from deploy_helpers import tfc_settings

from host.packing import DriverSettings, FinnType, PackingError, SettingsError, pack_rows, unpack_rows

TYPES = ["BINARY", "BIPOLAR", "UINT2", "INT2", "INT3", "UINT4", "UINT5", "UINT8", "INT8", "UINT16", "INT16", "INT24"]
SHAPES = [(3, 7), (2, 4, 16), (1, 49, 16), (5, 1), (2, 3, 9)]


def random_values(t: FinnType, shape, rng) -> np.ndarray:
    v = rng.integers(t.min, t.max + 1, size=shape)
    return np.where(v == 0, -1, v) if t.name == "BIPOLAR" else v


def test_hand_checked_layouts() -> None:
    # UINT8 rows are the bytes themselves (value 0 first): what the DMA reads for raw pixels.
    assert pack_rows(np.array([[1, 2, 3]]), FinnType("UINT8")).tolist() == [[1, 2, 3]]
    # 9 BINARY values: value i is bit i of a little-endian word, padded to 2 bytes.
    assert pack_rows(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1]), FinnType("BINARY")).tolist() == [0x01, 0x01]
    # INT2 (-1, 1): codes 3 and 1 -> 3 | 1 << 2 = 7.
    assert pack_rows(np.array([-1, 1]), FinnType("INT2")).tolist() == [0x07]
    # UINT16 258 -> little-endian bytes 0x02 0x01.
    assert pack_rows(np.array([258]), FinnType("UINT16")).tolist() == [0x02, 0x01]
    # BIPOLAR -1 is bit 0.
    assert pack_rows(np.array([-1, 1, 1, -1]), FinnType("BIPOLAR")).tolist() == [0b0110]


@pytest.mark.parametrize("name", TYPES)
def test_round_trip(name: str) -> None:
    t, rng = FinnType(name), np.random.default_rng(1)
    for shape in SHAPES:
        v = random_values(t, shape, rng)
        packed = pack_rows(v, t)
        assert packed.dtype == np.uint8 and packed.shape == (*shape[:-1], (shape[-1] * t.bitwidth + 7) // 8)
        np.testing.assert_array_equal(unpack_rows(packed, t, shape[-1]), v)


@pytest.mark.parametrize("name", TYPES)
def test_equals_finn_plus_data_packing(name: str) -> None:
    """Byte equality with finn-plus's packer, called as FINNDMAOverlay calls it (both reversals)."""
    data_packing = pytest.importorskip("finn.util.data_packing", reason="finn-plus is in the main environment only")
    from qonnx.core.datatype import DataType

    t, dt, rng = FinnType(name), DataType[name], np.random.default_rng(2)
    for shape in SHAPES:
        v = random_values(t, shape, rng)
        containers = [np.float32] + ([np.uint8] if name == "UINT8" else []) + ([np.int8] if name == "INT8" else [])
        for container in containers:
            ref = data_packing.finnpy_to_packed_bytearray(v.astype(container), dt, reverse_inner=True, reverse_endian=True)
            np.testing.assert_array_equal(np.asarray(ref), pack_rows(v, t), err_msg=f"{name} {shape} {container}")
        back = data_packing.packed_bytearray_to_finnpy(
            np.ascontiguousarray(ref), dt, shape, reverse_inner=True, reverse_endian=True
        )
        np.testing.assert_array_equal(back, unpack_rows(pack_rows(v, t), t, shape[-1]))


def test_type_parsing_and_ranges() -> None:
    assert FinnType.parse("DataType['UINT8']") == FinnType("UINT8")
    assert (FinnType("INT4").min, FinnType("INT4").max) == (-8, 7)
    assert (FinnType("BIPOLAR").min, FinnType("BIPOLAR").max) == (-1, 1)
    with pytest.raises(SettingsError, match="FLOAT32"):
        FinnType.parse("DataType['FLOAT32']")


def test_value_checks() -> None:
    with pytest.raises(PackingError, match=r"outside UINT2"):
        pack_rows(np.array([4]), FinnType("UINT2"))
    with pytest.raises(PackingError, match="non-integer"):
        pack_rows(np.array([0.5]), FinnType("UINT8"))
    with pytest.raises(PackingError, match="BIPOLAR"):
        pack_rows(np.array([0, 1]), FinnType("BIPOLAR"))
    with pytest.raises(PackingError, match="need 1 bytes"):
        unpack_rows(np.zeros((2, 3), np.uint8), FinnType("UINT4"), 1)


def test_settings_pack_and_unpack(tmp_path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(tfc_settings()))
    s = DriverSettings.load(path)
    assert (s.ishape_normal, s.ishape_folded, s.ishape_packed) == ((784,), (49, 16), (49, 16))
    x = np.random.default_rng(3).integers(0, 256, size=(3, 784), dtype=np.uint8)
    packed = s.pack_input(x)
    assert packed.shape == (3, 49, 16) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed.reshape(3, 784), x)  # UINT8: bytes in pixel order
    out = s.unpack_output(np.array([[[7]], [[9]]], dtype=np.uint8))
    assert out.shape == (2, 1) and out[:, 0].tolist() == [7, 9]


def test_settings_refuse_bad_input(tmp_path) -> None:
    s = DriverSettings.from_dict(tfc_settings())
    with pytest.raises(PackingError, match="empty input batch"):
        s.pack_input(np.zeros((0, 784), np.uint8))
    with pytest.raises(PackingError, match=r"takes \(N, \(784,\)\)"):
        s.pack_input(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(PackingError, match="outside UINT8"):
        s.pack_input(np.full((1, 784), 256, np.int64))
    with pytest.raises(PackingError, match="expected uint8"):
        s.check_packed_input(np.zeros((1, 49, 16), np.int32))
    with pytest.raises(PackingError, match="expected uint8"):
        s.unpack_output(np.zeros((1, 2, 1), np.uint8))


def test_settings_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(SettingsError, match="settings.json: driver settings file not found"):
        DriverSettings.load(tmp_path / "settings.json")
    bad = tfc_settings()
    bad["driver_information"]["io_shape_dict"]["ishape_packed"] = [[1, 49, 2]]
    (tmp_path / "s.json").write_text(json.dumps(bad))
    with pytest.raises(SettingsError, match=r"s.json: input: packed shape \(49, 2\) should be \(49, 16\)"):
        DriverSettings.load(tmp_path / "s.json")
    del bad["driver_information"]["io_shape_dict"]["odt"]
    with pytest.raises(SettingsError, match="missing key 'odt'"):
        DriverSettings.from_dict(bad)
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(SettingsError, match="t.json: not readable JSON"):
        DriverSettings.load(tmp_path / "t.json")


def test_test_images_in_the_accelerator_layout() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)  # (N, C, H, W)
    flat = tfc_settings()
    io = flat["driver_information"]["io_shape_dict"]
    io.update(ishape_normal=[[1, 60]], ishape_folded=[[1, 6, 10]], ishape_packed=[[1, 6, 10]])
    np.testing.assert_array_equal(DriverSettings.from_dict(flat).from_nchw(x), x.reshape(2, 60))
    io.update(ishape_normal=[[1, 4, 5, 3]], ishape_folded=[[1, 4, 5, 1, 3]], ishape_packed=[[1, 4, 5, 1, 3]])
    np.testing.assert_array_equal(DriverSettings.from_dict(flat).from_nchw(x), x.transpose(0, 2, 3, 1))
    with pytest.raises(PackingError, match=r"\(3, 4, 5\) do not match the accelerator input \(784,\)"):
        DriverSettings.from_dict(tfc_settings()).from_nchw(x)
