"""Board backend: the FINN accelerator on a PYNQ board through finn-plus-driver's overlay.

The bitfile, its ``.hwh`` and ``settings.json`` come from a verified deployment package. pynq and
finn-plus-driver are imported here, lazily, so host/ loads without them; on a machine without an
FPGA the constructor fails with :class:`NoFpgaDeviceError` before touching anything else.

Why not ``overlay.execute()``: it packs with finn-plus-driver and requires a full batch. We hand in
bytes that host/packing.py already packed, write them into the DMA buffer, and run
``execute_on_buffers(batch_size=k)``, so a final partial batch (k < batch_size) works.
"""

from __future__ import annotations

import numpy as np

from host.accelerator import BackendUnavailable, LatencyEstimate


class NoFpgaDeviceError(BackendUnavailable):
    """No FPGA device is reachable (not a PYNQ board, or pynq not installed)."""


def find_device():
    """The first pynq device; :class:`NoFpgaDeviceError` where there is none."""
    try:
        import pynq
    except ImportError as err:
        raise NoFpgaDeviceError(
            f"no FPGA device: pynq is not installed here ({err}); run `python -m host validate` on a PYNQ "
            "board image, or the emulation on a build machine (python -m hw_builds.validate_emulated validate ... --backend emulation)"
        ) from err
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynq warns "No devices found" and we say it better below
        try:
            devices = list(pynq.Device.devices)
        except Exception as err:  # pynq raises various errors when no XRT / no zocl is present
            raise NoFpgaDeviceError(f"no FPGA device: pynq could not list devices ({type(err).__name__}: {err})") from err
    if not devices:
        raise NoFpgaDeviceError(
            "no FPGA device: pynq found none (this is not a PYNQ board, or the FPGA manager / XRT is missing)"
        )
    return devices[0]


class BoardAccelerator:
    """The accelerator of a deployment package, loaded onto the board's FPGA."""

    backend = "board"

    def __init__(self, package, batch_size: int):
        if package.bitfile is None:
            raise BackendUnavailable(
                f"{package.root}: the package has no bitfile (built with target emulation); "
                "validate it with the emulation on the build machine (python -m hw_builds.validate_emulated), or rebuild with a hardware target"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = find_device()
        from finn_plus_driver import get_driver_class

        self.settings = package.settings
        info = dict(package.settings.raw["driver_information"])
        cls = get_driver_class(info.get("driver_type", "FINNDMAOverlay"))
        io_shape_dict = {k: (list(v) if isinstance(v, list) else v) for k, v in info["io_shape_dict"].items()}
        self.overlay = cls(
            bitfile_name=str(package.bitfile),
            platform=info.get("platform", "zynq-iodma"),
            io_shape_dict=io_shape_dict,
            batch_size=batch_size,
            fclk_mhz=float(info.get("fclk_mhz", 100.0)),
            device=device,
            runtime_weight_dir=str(package.root / "driver" / "runtime_weights"),
            mlo_weight_dir=str(package.root / "driver" / "mlo_weights"),
            runtime_weights=bool(info.get("runtime_weights", False)),
        )
        self.batch_size = batch_size

    def execute(self, packed_inputs: np.ndarray) -> np.ndarray:
        packed = self.settings.check_packed_input(packed_inputs)
        n = packed.shape[0]
        out = np.empty((n, *self.settings.oshape_packed), dtype=np.uint8)
        ibuf = self.overlay.ibuf_packed_device[0]
        obuf = self.overlay.obuf_packed_device[0]
        for lo in range(0, n, self.batch_size):
            k = min(self.batch_size, n - lo)  # final partial batch: k < batch_size
            ibuf[:k] = packed[lo : lo + k]
            ibuf.flush()
            self.overlay.execute_on_buffers(batch_size=k)
            obuf.invalidate()
            out[lo : lo + k] = obuf[:k]
        return out

    def latency_estimate(self) -> LatencyEstimate | None:
        return None  # on the board latency is measured

    def close(self) -> None:
        self.overlay = None
