"""The replay backend: an accelerator's packed answers recorded on one machine, replayed on another CPU.

A recording (``.npz``) holds, for every test image of a deployment package, the packed input bytes
the accelerator received and the packed output bytes it gave, with FINN's latency estimate and the
package's manifest sha256. It is made where an accelerator runs (:func:`record_replay`: FINN's
emulation on the build host). Replayed elsewhere (a board's ARM CPU without its bitstream, or an ARM
root file system under QEMU), ``python -m host validate --backend replay --replay FILE`` proves two
things on that CPU: it packs every image into exactly the recorded bytes (an image whose bytes are not
in the recording stops validation with :class:`ReplayMismatch`, exit status 1), and its XNOR reference
agrees with the recorded accelerator outputs image by image. It measures nothing about the accelerator:
its latency is the recorded FINN estimate, labelled as such. numpy and the standard library only.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from host.accelerator import BackendUnavailable, LatencyEstimate
from host.atomic import atomic_path
from host.package import MANIFEST, Package, sha256_file
from host.packing import DriverSettings
from host.refusal import InputFileError, read_npz

FORMAT = "bnnflow-replay-v1"


class ReplayMismatch(RuntimeError):
    """This CPU packed an image into bytes the recording does not hold: its packing differs from the recorder's."""


def record_replay(package: Package, accelerator, out_path: str | Path, batch_size: int = 100) -> dict:
    """Run every test image of ``package`` through ``accelerator`` and write the recording to ``out_path``.

    ``accelerator`` must have FINN's latency estimate (the emulation backend); a backend without one is
    refused with ValueError (the replay could only time its own lookups). Returns a summary dict
    (images, recorded_on machine, path). The file is written atomically.
    """
    estimate = accelerator.latency_estimate()
    if estimate is None:
        raise ValueError(f"{accelerator.backend} backend gives no latency estimate; record from the emulation backend")
    x, _, _ = package.load_testset()
    packed_in = package.settings.pack_input(package.settings.from_nchw(x))  # (N, *ishape_packed) uint8
    packed_out = np.concatenate([accelerator.execute(packed_in[lo : lo + batch_size])
                                 for lo in range(0, len(packed_in), batch_size)])  # (N, *oshape_packed) uint8
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz"
        np.savez(
            f,
            format=np.array(FORMAT),
            package_manifest_sha256=np.array(sha256_file(package.root / MANIFEST)),
            recorded_on=np.array(platform.machine()),
            backend=np.array(accelerator.backend),
            inputs=packed_in,
            outputs=packed_out,
            estimate=np.array([estimate.fclk_mhz, estimate.critical_path_cycles, estimate.max_cycles], dtype=np.float64),
        )
    return {"images": int(len(packed_in)), "recorded_on": platform.machine(), "path": str(out_path)}


class ReplayAccelerator:
    """Answers ``execute`` with the recorded packed outputs of the same packed inputs (see the module doc)."""

    backend = "replay"

    def __init__(self, settings: DriverSettings, recording: dict, path: Path):
        self.settings = settings
        self.path = path
        self.recorded_on = str(recording["recorded_on"])
        self.recorded_backend = str(recording["backend"])
        inputs, outputs = recording["inputs"], recording["outputs"]
        if inputs.shape[1:] != settings.ishape_packed or outputs.shape[1:] != settings.oshape_packed:
            raise BackendUnavailable(f"{path}: recorded shapes {inputs.shape[1:]} -> {outputs.shape[1:]} are not the "
                                     f"package's {settings.ishape_packed} -> {settings.oshape_packed}")
        self._answers = {row.tobytes(): out for row, out in zip(inputs, outputs)}
        fclk, critical, slowest = recording["estimate"]
        self._estimate = LatencyEstimate(float(fclk), int(critical), int(slowest))

    @classmethod
    def open(cls, package: Package, path: str | Path) -> ReplayAccelerator:
        """Load and check a recording for ``package``; BackendUnavailable names the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise BackendUnavailable(f"{path}: no such replay recording (make one with host.replay.record_replay)")
        try:
            recording = read_npz(path, "replay recording")
        except InputFileError as err:
            raise BackendUnavailable(str(err)) from err
        missing = {"format", "package_manifest_sha256", "recorded_on", "backend", "inputs", "outputs", "estimate"}
        missing -= set(recording)
        if missing or str(recording["format"]) != FORMAT:
            raise BackendUnavailable(f"{path}: not a {FORMAT} recording (missing {sorted(missing) or 'format'})")
        seal = sha256_file(package.root / MANIFEST)
        if str(recording["package_manifest_sha256"]) != seal:
            raise BackendUnavailable(f"{path}: recorded for another package (manifest sha256 "
                                     f"{str(recording['package_manifest_sha256'])[:12]}..., this one {seal[:12]}...)")
        return cls(package.settings, recording, path)

    def execute(self, packed_inputs: np.ndarray) -> np.ndarray:
        """(N, *ishape_packed) uint8 -> the recorded (N, *oshape_packed) uint8; ReplayMismatch for unknown bytes."""
        packed_inputs = self.settings.check_packed_input(packed_inputs)
        out = []
        for i, row in enumerate(packed_inputs):
            answer = self._answers.get(row.tobytes())
            if answer is None:
                raise ReplayMismatch(f"{self.path}: image {i} of this batch was packed into bytes the recording "
                                     f"(made on {self.recorded_on}) does not hold: this CPU packs differently")
            out.append(answer)
        return np.stack(out)

    def latency_estimate(self) -> LatencyEstimate:
        return self._estimate

    def close(self) -> None:
        pass
