"""The accelerator's I/O contract: FINN driver settings and the bit packing of its DMA buffers.

Why our own copy: host/ runs on the board with numpy only, and the same code must run in CI next to
finn-plus (numpy >= 2) where ``finn_plus_driver`` (numpy < 2) cannot be installed. The layout is the
one ``finn_plus_driver.overlays.dma.FINNDMAOverlay`` uses: ``finnpy_to_packed_bytearray(folded, dt,
reverse_inner=True, reverse_endian=True)``. With both reversals that is a little-endian word per
folded row in which value 0 sits in the least significant bits:

    row (v0, v1, ..., v{n-1}) of a b-bit type -> W = sum_i (v_i mod 2^b) << (i*b), stored as
    ceil(n*b/8) bytes, least significant byte first.

tests/host/test_packing_board.py proves byte equality against finn-plus-driver's own functions.

``settings.json`` is what finn-plus's ``MakePYNQDriver`` writes: ``{"driver_information":
{"driver_type", "platform", "fclk_mhz", "io_shape_dict": {"idt": ["DataType['UINT8']"],
"ishape_normal": [[1, 784]], "ishape_folded": [[1, 49, 16]], "ishape_packed": [[1, 49, 16]],
"odt", "oshape_*", "idma_names", "odma_names", "num_inputs", "num_outputs", ...}}}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.refusal import InputFileError, RefusedInput, read_json

_DT_RE = re.compile(r"^(?:DataType\[['\"]?)?([A-Z]+[0-9]*)(?:['\"]?\])?$")


class PackingError(RefusedInput):
    """Data that does not fit the accelerator's I/O contract (shape, dtype or value range)."""


class SettingsError(RefusedInput):
    """A driver ``settings.json`` that is missing, unreadable or describes an unsupported accelerator."""


@dataclass(frozen=True)
class FinnType:
    """The integer FINN data types a BNN accelerator streams: BINARY, BIPOLAR, UINTn, INTn (n <= 32)."""

    name: str

    @classmethod
    def parse(cls, text: str) -> "FinnType":
        """Accept ``UINT8`` or the ``DataType['UINT8']`` spelling of settings.json."""
        m = _DT_RE.match(text.strip())
        if not m:
            raise SettingsError(f"unsupported FINN data type {text!r}")
        t = cls(m.group(1))
        t.bitwidth  # noqa: B018 - validates the name
        return t

    @property
    def bitwidth(self) -> int:
        if self.name in ("BINARY", "BIPOLAR"):
            return 1
        m = re.fullmatch(r"(U?INT)([0-9]+)", self.name)
        if not m or not 1 <= int(m.group(2)) <= 32:
            raise SettingsError(f"unsupported FINN data type {self.name!r} (BINARY, BIPOLAR, UINTn, INTn n<=32)")
        return int(m.group(2))

    @property
    def signed(self) -> bool:
        return self.name.startswith("INT") or self.name == "BIPOLAR"

    @property
    def min(self) -> int:
        if self.name == "BIPOLAR":
            return -1
        return -(1 << (self.bitwidth - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.bitwidth == 1:
            return 1  # BINARY {0, 1}, BIPOLAR {-1, +1}
        return (1 << (self.bitwidth - 1)) - 1 if self.signed else (1 << self.bitwidth) - 1

    def check_values(self, values: np.ndarray, what: str) -> np.ndarray:
        """Return ``values`` as int64, refusing non-integers and values outside the type's range."""
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise PackingError(f"{what}: non-integer values cannot be packed as {self.name}")
        elif arr.dtype.kind not in "iub":
            raise PackingError(f"{what}: dtype {arr.dtype} cannot be packed as {self.name}")
        ints = arr.astype(np.int64)
        if ints.size and (ints.min() < self.min or ints.max() > self.max):
            raise PackingError(
                f"{what}: values in [{ints.min()}, {ints.max()}] outside {self.name}'s [{self.min}, {self.max}]"
            )
        if self.name == "BIPOLAR" and np.any(ints == 0):
            raise PackingError(f"{what}: BIPOLAR values must be -1 or +1, found 0")
        return ints


def pack_rows(values: np.ndarray, dtype: FinnType) -> np.ndarray:
    """Pack the innermost axis of ``values`` (..., n) into (..., ceil(n*b/8)) uint8, FINN driver layout."""
    ints = dtype.check_values(values, "pack_rows input")
    if ints.ndim == 0:
        raise PackingError("pack_rows needs at least one axis")
    b, n = dtype.bitwidth, ints.shape[-1]
    if dtype.name == "BIPOLAR":
        ints = (ints + 1) // 2  # -1 -> 0, +1 -> 1
    codes = (ints & ((1 << b) - 1)).astype(np.uint64)  # two's complement for negatives
    bits = ((codes[..., None] >> np.arange(b, dtype=np.uint64)) & 1).astype(np.uint8)  # (..., n, b) LSB first
    bits = bits.reshape(*ints.shape[:-1], n * b)
    pad = (-(n * b)) % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], pad), dtype=np.uint8)], axis=-1)
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack_rows(packed: np.ndarray, dtype: FinnType, n: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: (..., nbytes) uint8 -> (..., n) int64 values of ``dtype``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise PackingError(f"packed data must be uint8, got {packed.dtype}")
    b = dtype.bitwidth
    nbytes = (n * b + 7) // 8
    if packed.ndim == 0 or packed.shape[-1] != nbytes:
        raise PackingError(f"packed rows of {n} x {dtype.name} need {nbytes} bytes, got shape {packed.shape}")
    bits = np.unpackbits(packed, axis=-1, bitorder="little")[..., : n * b]
    bits = bits.reshape(*packed.shape[:-1], n, b).astype(np.int64)
    codes = (bits << np.arange(b, dtype=np.int64)).sum(axis=-1)  # (..., n)
    if dtype.name == "BIPOLAR":
        return codes * 2 - 1
    if dtype.signed:
        codes = np.where(codes >= (1 << (b - 1)), codes - (1 << b), codes)
    return codes


@dataclass(frozen=True)
class DriverSettings:
    """One-input, one-output FINN accelerator as described by its driver ``settings.json``.

    Shapes are per image (the leading batch axis of settings.json, always 1, is dropped).
    """

    driver_type: str
    platform: str
    fclk_mhz: float | None
    idt: FinnType
    odt: FinnType
    ishape_normal: tuple[int, ...]
    ishape_folded: tuple[int, ...]
    ishape_packed: tuple[int, ...]
    oshape_normal: tuple[int, ...]
    oshape_folded: tuple[int, ...]
    oshape_packed: tuple[int, ...]
    raw: dict

    @classmethod
    def load(cls, path: str | Path) -> "DriverSettings":
        """Read ``settings.json``; every problem names the file and the key."""
        path = Path(path)
        try:
            data = read_json(path, "driver settings file")
        except InputFileError as err:
            raise SettingsError(str(err)) from err
        try:
            return cls.from_dict(data)
        except SettingsError as err:
            raise SettingsError(f"{path}: {err}") from err

    @classmethod
    def from_dict(cls, data: dict) -> "DriverSettings":
        try:
            info = data["driver_information"]
            io = info["io_shape_dict"]
            n_in, n_out = len(io["idt"]), len(io["odt"])
            if n_in != 1 or n_out != 1:
                raise SettingsError(f"{n_in} inputs / {n_out} outputs; bnnflow drives one of each")

            def shape(key: str) -> tuple[int, ...]:
                s = tuple(int(d) for d in io[key][0])
                if len(s) < 2 or s[0] != 1 or min(s) < 1:
                    raise SettingsError(f"io_shape_dict.{key} = {list(s)} is not a (1, ...) shape")
                return s[1:]

            fclk = info.get("fclk_mhz")
            settings = cls(
                driver_type=str(info.get("driver_type", "FINNDMAOverlay")),
                platform=str(info.get("platform", "zynq-iodma")),
                fclk_mhz=None if fclk is None else float(fclk),
                idt=FinnType.parse(io["idt"][0]),
                odt=FinnType.parse(io["odt"][0]),
                ishape_normal=shape("ishape_normal"),
                ishape_folded=shape("ishape_folded"),
                ishape_packed=shape("ishape_packed"),
                oshape_normal=shape("oshape_normal"),
                oshape_folded=shape("oshape_folded"),
                oshape_packed=shape("oshape_packed"),
                raw=data,
            )
        except KeyError as err:
            raise SettingsError(f"missing key {err} in driver_information / io_shape_dict") from None
        except (TypeError, ValueError) as err:
            if isinstance(err, SettingsError):
                raise
            raise SettingsError(f"malformed io_shape_dict ({err})") from err
        settings._check_consistent()
        return settings

    def _check_consistent(self) -> None:
        for side, dt, normal, folded, packed in (
            ("input", self.idt, self.ishape_normal, self.ishape_folded, self.ishape_packed),
            ("output", self.odt, self.oshape_normal, self.oshape_folded, self.oshape_packed),
        ):
            if int(np.prod(normal)) != int(np.prod(folded)):
                raise SettingsError(f"{side}: folded shape {folded} does not hold the {normal} elements")
            want = (*folded[:-1], (folded[-1] * dt.bitwidth + 7) // 8)
            if tuple(packed) != want:
                raise SettingsError(f"{side}: packed shape {packed} should be {want} for {folded} x {dt.name}")

    def from_nchw(self, x: np.ndarray) -> np.ndarray:
        """Test-set images (N, C, H, W) in the accelerator's input layout (N, *ishape_normal).

        A flat input (the MLPs) takes the images flattened in C order, as the model's Flatten
        does; a (H, W, C) input (FINN's NHWC convolutions) takes them transposed.
        """
        x = np.asarray(x)
        if x.ndim != 4:
            raise PackingError(f"test images have shape {x.shape}, expected (N, C, H, W)")
        n, c, h, w = x.shape
        if self.ishape_normal == (c, h, w):
            return x
        if self.ishape_normal == (h, w, c):
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if len(self.ishape_normal) == 1 and self.ishape_normal[0] == c * h * w:
            return x.reshape(n, c * h * w)
        raise PackingError(
            f"test images of shape {(c, h, w)} do not match the accelerator input {self.ishape_normal}"
        )

    def pack_input(self, x: np.ndarray) -> np.ndarray:
        """(N, *ishape_normal) values -> (N, *ishape_packed) uint8, what the input DMA reads."""
        x = np.asarray(x)
        if x.ndim == 0 or tuple(x.shape[1:]) != self.ishape_normal:
            raise PackingError(f"input batch has shape {x.shape}, the accelerator takes (N, {self.ishape_normal})")
        if x.shape[0] == 0:
            raise PackingError("empty input batch (0 images)")
        folded = x.reshape(x.shape[0], *self.ishape_folded)
        return np.ascontiguousarray(pack_rows(folded, self.idt))

    def unpack_output(self, packed: np.ndarray) -> np.ndarray:
        """(N, *oshape_packed) uint8 from the output DMA -> (N, *oshape_normal) int64."""
        packed = np.asarray(packed)
        if packed.dtype != np.uint8 or packed.ndim == 0 or tuple(packed.shape[1:]) != self.oshape_packed:
            raise PackingError(
                f"output buffer is {packed.dtype}{packed.shape}, expected uint8 (N, {self.oshape_packed})"
            )
        values = unpack_rows(packed, self.odt, self.oshape_folded[-1])
        return values.reshape(packed.shape[0], *self.oshape_normal)

    def check_packed_input(self, packed: np.ndarray) -> np.ndarray:
        """Refuse a packed input batch of the wrong dtype/shape or with no image, before any backend runs."""
        packed = np.asarray(packed)
        if packed.dtype != np.uint8 or packed.ndim == 0 or tuple(packed.shape[1:]) != self.ishape_packed:
            raise PackingError(
                f"packed input is {packed.dtype}{packed.shape}, expected uint8 (N, {self.ishape_packed})"
            )
        if packed.shape[0] == 0:
            raise PackingError("empty input batch (0 images)")
        return packed
