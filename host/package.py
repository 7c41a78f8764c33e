"""The deployment package: everything `host validate` needs on a board, with a sha256 manifest.

Layout of ``hw_builds/<model>/<board>/deploy/``::

    manifest.json            format, model, board, target, sha256 of every other file
    README.md                the commands to run on the board
    validate_config.json     budgets, batch size, latency repeats (from workflow/config.yaml); the
                             float ties verify_xnor found against Brevitas (brevitas_float_ties)
    driver/settings.json     FINN driver settings (I/O types and packed shapes)
    bitfile/<name>.bit/.hwh  the accelerator (target bitfile only)
    emulation/model.onnx     the FINN dataflow model the emulation backend runs (both targets;
                             emulation/parent.onnx where the partition is not the whole network)
    xnor_model.npz           the XNOR-popcount reference
    testset.npz              x uint8 (N, C, H, W) raw pixels, labels int64 (N,), indices int64 (N,)
    host/*.py                this package's code

:func:`load_package` checks the manifest before anything else is read: a missing or changed
file stops validation with the file's name. Only numpy and the standard library are used here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.inputs import to_model_input
from host.packing import DriverSettings, PackingError, SettingsError
from host.refusal import InputFileError, RefusedInput, read_json, read_npz
from host.xnor_format import load_xnor_model

FORMAT = "bnnflow-deploy"
VERSION = 1
MANIFEST = "manifest.json"
TARGETS = ("hardware", "emulation")


class PackageError(RefusedInput):
    """A deployment package that must not be used: missing, tampered or inconsistent files (exit status 2)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Package:
    """A verified package: paths and the small files already parsed."""

    root: Path
    manifest: dict
    settings: DriverSettings
    config: dict
    bitfile: Path | None
    emulation_model: Path
    emulation_parent: Path | None

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def board(self) -> str:
        return self.manifest["board"]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def xnor_model(self) -> Path:
        return self.root / "xnor_model.npz"

    def load_testset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x uint8 (N, C, H, W), labels int64 (N,), indices int64 (N,)), checked against the input."""
        return load_testset(self.root / "testset.npz", self.settings)


def load_testset(path: Path, settings: DriverSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a test-set file and refuse one that does not fit the accelerator's input.

    ``indices`` are the images' positions in the data set's test split (what a person looks up).
    """
    try:
        npz = read_npz(path, "test-set file", ("x", "labels"))
    except InputFileError as err:
        raise PackageError(str(err)) from err
    x, labels = npz["x"], npz["labels"]
    indices = npz["indices"] if "indices" in npz else np.arange(len(x))
    if x.dtype != np.uint8 or x.ndim != 4:
        raise PackageError(f"{path}: x is {x.dtype}{x.shape}, expected uint8 raw pixels (N, C, H, W)")
    if labels.ndim != 1 or labels.shape[0] != x.shape[0] or labels.dtype.kind not in "iu":
        raise PackageError(f"{path}: labels is {labels.dtype}{labels.shape}, expected integers ({x.shape[0]},)")
    if x.shape[0] == 0:
        raise PackageError(f"{path}: the test set is empty")
    try:
        settings.from_nchw(x[:1])
    except PackingError as err:
        raise PackageError(f"{path}: {err}") from None
    if indices.shape != labels.shape:
        raise PackageError(f"{path}: indices has shape {indices.shape}, expected {labels.shape}")
    return x, labels.astype(np.int64), indices.astype(np.int64)


def load_package(root: str | Path) -> Package:
    """Verify the manifest (every file present with its sha256), then parse the small files."""
    root = Path(root)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise PackageError(f"{root}: no such package directory")
    if not mpath.is_file():
        raise PackageError(f"{mpath}: manifest missing; not a bnnflow deployment package")
    try:
        manifest = read_json(mpath, "package manifest")
    except InputFileError as err:
        raise PackageError(str(err)) from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise PackageError(f"{mpath}: format {manifest.get('format')!r} v{manifest.get('version')!r}, expected {FORMAT} v{VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise PackageError(f"{mpath}: no 'files' table")
    for rel, digest in sorted(files.items()):
        if not isinstance(digest, str) or len(digest) != 64:
            raise PackageError(f"{mpath}: files[{rel!r}] must be a sha256 hex digest (64 characters), "
                               f"got {json.dumps(digest)}")
        path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise PackageError(f"{mpath}: file entry {rel!r} points outside the package")
        if not path.is_file():
            raise PackageError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise PackageError(f"{path}: sha256 {actual[:16]}... differs from the manifest's {digest[:16]}... (file changed)")
    target = manifest.get("target")
    if target not in TARGETS:
        raise PackageError(f"{mpath}: target {target!r} is not one of {TARGETS}")
    required = ["driver/settings.json", "xnor_model.npz", "testset.npz", "validate_config.json", "README.md"]
    bits = [r for r in files if r.startswith("bitfile/") and r.endswith(".bit")]
    required.append("emulation/model.onnx")
    if target == "hardware":
        if len(bits) != 1:
            raise PackageError(f"{mpath}: target hardware needs exactly one bitfile/*.bit, found {bits}")
        required.append(bits[0][: -len(".bit")] + ".hwh")
    for rel in required:
        if rel not in files:
            raise PackageError(f"{mpath}: required file {rel} is not in the package")
    try:
        settings = DriverSettings.load(root / "driver/settings.json")
        config = read_json(root / "validate_config.json", "validation settings file")
    except (SettingsError, InputFileError) as err:
        raise PackageError(str(err)) from err
    _check_config(config, root / "validate_config.json")
    parent = root / "emulation/parent.onnx"
    return Package(
        root=root,
        manifest=manifest,
        settings=settings,
        config=config,
        bitfile=root / bits[0] if bits else None,
        emulation_model=root / "emulation/model.onnx",
        emulation_parent=parent if "emulation/parent.onnx" in files else None,
    )


def _check_config(config: object, path: Path) -> None:
    """validate_config.json: positive integer batch_size / latency_repeats, numeric budgets."""
    def bad(what: str) -> PackageError:
        return PackageError(f"{path}: {what}")

    if not isinstance(config, dict):
        raise bad("expected a JSON object")
    for key in ("batch_size", "latency_repeats"):
        v = config.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad(f"{key} must be a positive integer, got {v!r}")
    if not isinstance(config.get("enforce_budgets", True), bool):
        raise bad(f"enforce_budgets must be true or false, got {config['enforce_budgets']!r}")
    ties = config.get("brevitas_float_ties", 0)
    if not isinstance(ties, int) or isinstance(ties, bool) or ties < 0:
        raise bad(f"brevitas_float_ties must be a count, got {ties!r}")
    budgets = config.get("budgets", {})
    if not isinstance(budgets, dict):
        raise bad("budgets must be an object")
    for key, v in budgets.items():
        if key not in ("accuracy_min_pct", "latency_max_ms", "power_max_mw"):
            raise bad(f"unknown budget {key!r}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise bad(f"budget {key} must be a number, got {v!r}")


def testset_from_dataset(dataset_npz: str | Path, test_subset: int | None,
                         input_shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """x_test/y_test of a prepared data set as the model's NCHW uint8 input + int64 labels (first ``test_subset``).

    ``input_shape`` (C, H, W) is the model's: CNV on MNIST gets the padded 3x32x32 images it was trained on.
    """
    path = Path(dataset_npz)
    try:
        npz = read_npz(path, "prepared data set", ("x_test", "y_test"))
    except InputFileError as err:
        raise PackageError(str(err)) from err
    x, y = npz["x_test"], npz["y_test"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise PackageError(f"{path}: x_test is {x.dtype}{x.shape}, expected uint8 (N,H,W) or (N,H,W,C)")
    n = len(x) if test_subset is None else min(int(test_subset), len(x))
    try:
        x = to_model_input(x[:n], input_shape)  # (N, C, H, W)
    except ValueError as err:
        raise PackageError(f"{path}: {err}") from None
    return {
        "x": x,
        "labels": y[:n].astype(np.int64),
        "indices": np.arange(n, dtype=np.int64),
    }


def package_from_build(
    build_dir: str | Path,
    xnor_npz: str | Path,
    dataset_npz: str | Path,
    out_dir: str | Path,
    *,
    test_subset: int | None,
    validate_config: dict,
    host_dir: str | Path | None = None,
) -> Path:
    """Package a FINN build (``hw_builds/<model>/<board>/``, described by its summary.json).

    Takes from the summary: model, board, target, the folded HW model the emulation runs, the
    dataflow parent where the partition does not span the network, and the driver settings;
    with target hardware also ``bitfile/finn-accel.bit`` and its ``.hwh`` from FINN's output.
    """
    build_dir = Path(build_dir)
    summary_path = build_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
        model, board, target = summary["model"], summary["board"], summary["target"]
        hw_model = build_dir / summary["hw_model"]
        settings = build_dir / summary.get("driver_settings", "driver/settings.json")
        spans = bool(summary.get("partition_spans_network", True))
    except FileNotFoundError:
        raise PackageError(f"{summary_path}: build summary missing; run the compile_finn rule first") from None
    except (json.JSONDecodeError, KeyError) as err:
        raise PackageError(f"{summary_path}: not a bnnflow build summary ({err})") from err
    bitfile = None
    if target == "hardware":
        bits = sorted((build_dir / "bitfile").glob("*.bit"))
        if len(bits) != 1:
            raise PackageError(f"{build_dir / 'bitfile'}: expected one .bit of the hardware build, found {len(bits)}")
        bitfile = bits[0]
    return make_package(
        out_dir,
        model=model,
        board=board,
        target=target,
        settings_json=settings,
        xnor_npz=xnor_npz,
        dataset_npz=dataset_npz,
        test_subset=test_subset,
        validate_config=validate_config,
        host_dir=host_dir or Path(__file__).resolve().parent,
        bitfile=bitfile,
        emulation_model=hw_model,
        emulation_parent=None if spans else build_dir / "intermediate_models" / "dataflow_parent.onnx",
    )


README = """# {model} on {board}: bnnflow deployment package ({target})

Validates the FINN accelerator against the XNOR-popcount reference on {images} test images and checks
the budgets in validate_config.json. `manifest.json` holds the sha256 of every file;
`host validate` checks them first and refuses a package with a missing or changed file.

## On the board (PYNQ image, numpy < 2; target hardware)

    scp -r deploy xilinx@<board-ip>:~/{model}            # from the build machine
    ssh xilinx@<board-ip>
    sudo su                                              # pynq needs root for the FPGA manager
    source /etc/profile.d/pynq_venv.sh                   # PYNQ >= 2.7 images: the pynq venv
    pip3 install finn-plus-driver==1.6.1                 # the FINN runtime driver (needs numpy < 2)
    cd /home/xilinx/{model}
    python3 -m host validate --package . --backend board --out validation.json

Exit status 0: agreement is exact and every measured budget passed; 1: a disagreement or a failed
budget (details in validation.json); 2: the package or its data was refused.

Power: pynq.get_rails() gives rails on ZCU104 and Ultra96 (board total, with the idle level);
Pynq-Z1/Z2 and KV260 have no sensors, and validation.json then says power is null and why.

## Without a board (target emulation, on the build machine with finn-plus)

    python -m hw_builds.validate_emulated validate --package {package_path} --backend emulation --out validation.json

(bnnflow's FINN side hands its emulated accelerator to this package's `host validate`; the
package's host/ alone does not import FINN.)

The emulation runs FINN's compiled dataflow model on the same packed bytes; its latency is FINN's
cycle estimate at the configured clock, labelled as an estimate.
"""


def make_package(
    out_dir: str | Path,
    *,
    model: str,
    board: str,
    target: str,
    settings_json: str | Path,
    xnor_npz: str | Path,
    dataset_npz: str | Path,
    test_subset: int | None,
    validate_config: dict,
    host_dir: str | Path,
    bitfile: str | Path | None = None,
    emulation_model: str | Path | None = None,
    emulation_parent: str | Path | None = None,
) -> Path:
    """Assemble the package in a temp folder next to ``out_dir``, write the manifest, then rename."""
    if target not in TARGETS:
        raise PackageError(f"target must be one of {TARGETS}, not {target!r}")
    out_dir = Path(out_dir)
    settings = DriverSettings.load(settings_json)  # refuses a broken settings.json early
    sources: dict[str, Path] = {"driver/settings.json": Path(settings_json), "xnor_model.npz": Path(xnor_npz)}
    if target == "hardware":
        if bitfile is None:
            raise PackageError("target hardware needs the .bit file (and its .hwh next to it)")
        bit = Path(bitfile)
        hwh = bit.with_suffix(".hwh")
        for p in (bit, hwh):
            if not p.is_file():
                raise PackageError(f"{p}: missing; a hardware package needs the .bit and its .hwh")
        sources[f"bitfile/{bit.name}"] = bit
        sources[f"bitfile/{hwh.name}"] = hwh
    if emulation_model is None:
        raise PackageError("a package needs the FINN dataflow model (emulation_model) for the emulation backend")
    sources["emulation/model.onnx"] = Path(emulation_model)
    if emulation_parent is not None:
        sources["emulation/parent.onnx"] = Path(emulation_parent)
    for py in sorted(Path(host_dir).glob("*.py")):
        sources[f"host/{py.name}"] = py
    for rel, src in sources.items():
        if not src.is_file():
            raise PackageError(f"{src}: missing, cannot package it as {rel}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, src in sources.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        testset = testset_from_dataset(dataset_npz, test_subset, load_xnor_model(xnor_npz).input_shape)
        np.savez(tmp / "testset.npz", **testset)
        load_testset(tmp / "testset.npz", settings)  # the test set must fit the accelerator input
        (tmp / "validate_config.json").write_text(json.dumps(validate_config, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(
            README.format(model=model, board=board, target=target, images=len(testset["x"]), package_path=out_dir)
        )
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = {"format": FORMAT, "version": VERSION, "model": model, "board": board, "target": target, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
