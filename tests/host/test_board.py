"""Board backend without a board: a clear "no FPGA device" error, never a crash deep in pynq.

In the board environment pynq 4.0 and finn-plus-driver are really installed and find no device;
in the main environment pynq is absent. Both must end in NoFpgaDeviceError naming the cause.
"""

from __future__ import annotations

import importlib.util

import pytest
from deploy_helpers import build_package

from host.accelerator import BackendUnavailable, open_accelerator
from host.board import NoFpgaDeviceError, find_device
from host.package import load_package

HAS_PYNQ = importlib.util.find_spec("pynq") is not None


def test_find_device_says_no_fpga_device() -> None:
    with pytest.raises(NoFpgaDeviceError, match="no FPGA device") as info:
        find_device()
    if HAS_PYNQ:
        assert "pynq found none" in str(info.value)
    else:
        assert "pynq is not installed" in str(info.value)


def test_board_backend_without_device(tmp_path) -> None:
    pkg = load_package(build_package(tmp_path, target="hardware"))
    with pytest.raises(NoFpgaDeviceError, match="no FPGA device"):
        open_accelerator("board", pkg, batch_size=10)


def test_board_backend_needs_a_bitfile(tmp_path) -> None:
    pkg = load_package(build_package(tmp_path, target="emulation"))
    with pytest.raises(BackendUnavailable, match="no bitfile"):
        open_accelerator("board", pkg, batch_size=10)


@pytest.mark.board_env
@pytest.mark.skipif(not HAS_PYNQ, reason="pynq is in the board environment only")
def test_real_pynq_has_no_device_here() -> None:
    """The premise of the tests above, checked against pynq itself: it lists no device."""
    import warnings

    import pynq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(pynq.Device.devices) == []
    with pytest.raises(RuntimeError, match="No Devices Found"):
        pynq.allocate((4,), dtype="uint8")
