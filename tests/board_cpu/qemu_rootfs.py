"""The boards' CPUs under QEMU user-mode emulation: Debian 12 root file systems for ARMv7 and AArch64.

A Pynq-Z1 / Pynq-Z2 runs a 32-bit ARMv7 Cortex-A9 (Debian ``armhf``, ``np.intp`` 32-bit); Ultra96 and
ZCU104 run 64-bit AArch64 (``arm64``). :func:`ensure_rootfs` builds, once, a root file system for each
with ``mmdebstrap`` from the Debian mirror this machine's apt already uses (main suites only: the
security suite's armhf index once failed with a size mismatch, see TOOLCHAIN.md), with Debian's
python3 3.11, python3-numpy 1.24 (< 2, as on a PYNQ image), pytest, hypothesis and onnx, plus
finn-plus-driver and the two modules its packing imports (qonnx, bitstring): their pure-Python wheels
are fetched from PyPI by this machine's pip (its proxy and certificates apply) and installed by pip
inside the root (``--no-index --no-deps``: the driver's full dependency set needs pynq and a board).

The result is cached outside the git tree (``$BNNFLOW_ROOTFS_CACHE``, default
``~/.cache/bnnflow/board-cpu-rootfs``) in a folder named by the sha256 of everything that goes into it
(architecture, suites, mirror, package lists, this format's version), built under a lock in a
temporary folder and renamed into place only when complete. Running code there is plain ``chroot``
through the kernel's binfmt_misc, which hands ARM binaries to Debian's ``qemu-*-static``.

Everything here needs root (mmdebstrap's root mode, chroot, mounting binfmt_misc); what cannot be
had raises :class:`BoardCpuUnavailable` with the reason and the command that fixes it. Timing under
QEMU is not a measurement of the board.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORMAT_VERSION = 1
SUITES = ("bookworm", "bookworm-updates")  # Debian 12; no -security (see the module doc)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3", "python3-numpy", "python3-pytest", "python3-hypothesis", "python3-pip", "python3-onnx")
# finn-plus-driver's packing imports qonnx.core.datatype, qonnx.util.basic (which imports onnx: Debian's)
# and bitstring (4.0.2 is pure Python; 4.1+ needs the compiled bitarray). Versions as in requirements-board.lock
# where that is pure Python.
PIP_PACKAGES = ("finn-plus-driver==1.6.1", "qonnx==1.0.0", "bitstring==4.0.2")
STAMP = "bnnflow-rootfs.json"
# the make target that installs what is missing (see the Makefile)
FIX = "make board-cpu-deps (as root: apt-get install qemu-user-static binfmt-support mmdebstrap)"


@dataclass(frozen=True)
class Arch:
    """One board CPU: its Debian architecture, QEMU binfmt entry and what ``platform.machine()`` says there."""

    name: str  # ours: "armv7" or "aarch64"
    debian: str  # mmdebstrap --architectures
    qemu: str  # binfmt entry and binary: qemu-arm / qemu-aarch64
    machine: str  # uname -m inside: armv7l / aarch64
    intp_bits: int  # np.intp width there
    boards: str


ARCHES = {
    "armv7": Arch("armv7", "armhf", "qemu-arm", "armv7l", 32, "Pynq-Z1, Pynq-Z2 (Zynq-7000, Cortex-A9)"),
    "aarch64": Arch("aarch64", "arm64", "qemu-aarch64", "aarch64", 64, "Ultra96, ZCU104 (Zynq UltraScale+, Cortex-A53)"),
}


class BoardCpuUnavailable(RuntimeError):
    """QEMU, binfmt_misc or the root file system cannot be had here; the message says why and what to do."""


def cache_root() -> Path:
    """Where built root file systems are kept (outside the git tree)."""
    return Path(os.environ.get("BNNFLOW_ROOTFS_CACHE", Path.home() / ".cache" / "bnnflow" / "board-cpu-rootfs"))


def apt_mirror(sources_dirs: tuple[Path, ...] = (Path("/etc/apt/sources.list.d"), Path("/etc/apt"))) -> str:
    """This machine's Debian mirror: the first URI of an apt source that serves the bookworm suite.

    Reads deb822 ``*.sources`` and one-line ``*.list`` files; falls back to deb.debian.org.
    """
    for folder in sources_dirs:
        for path in sorted(folder.glob("*.sources")):
            for stanza in path.read_text(errors="replace").split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
                if "bookworm" in fields.get("Suites", "").split() and fields.get("Enabled", "yes") != "no":
                    return fields["URIs"].split()[0].rstrip("/")
        for path in sorted(folder.glob("*.list")):
            for line in path.read_text(errors="replace").splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
                if m:
                    return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def rootfs_spec(arch: Arch, mirror: str) -> dict:
    """Everything that determines a root file system's contents (its cache key is this dict's sha256)."""
    return {"format": FORMAT_VERSION, "architecture": arch.debian, "suites": list(SUITES), "mirror": mirror,
            "debian_packages": list(DEBIAN_PACKAGES), "pip_packages": list(PIP_PACKAGES), "variant": "apt"}


def _run(cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    """Run cmd; on timeout SIGTERM first (mmdebstrap then unmounts what it mounted), SIGKILL after a minute."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError as err:
        raise BoardCpuUnavailable(f"{what}: {cmd[0]} not found; install it with {FIX}") from err
    try:
        out, err_text = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise BoardCpuUnavailable(f"{what}: {' '.join(cmd[:3])} ... did not finish within {timeout:.0f} s") from err
    if proc.returncode != 0:
        tail = (err_text or out).strip().splitlines()[-5:]
        raise BoardCpuUnavailable(f"{what}: {' '.join(cmd[:4])} ... exited {proc.returncode}: {' | '.join(tail)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err_text)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mounts), deepest first."""
    prefix = str(path.resolve())
    points = [line.split()[1].encode().decode("unicode_escape") for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a (partial) root file system: first unmount anything an interrupted build left mounted in it
    (its /proc, /sys, /dev/pts), and never recurse into a mount point. Raises BoardCpuUnavailable if one stays."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    if _mounts_under(path):
        raise BoardCpuUnavailable(f"{path}: still has mounts {_mounts_under(path)}; unmount them, then delete it")
    shutil.rmtree(path)


def ensure_binfmt(arch: Arch) -> None:
    """Make the kernel run ``arch`` binaries through qemu-*-static (binfmt_misc mounted, entry enabled)."""
    if os.geteuid() != 0:
        raise BoardCpuUnavailable(f"the {arch.name} root file system needs root (mmdebstrap, chroot, binfmt_misc)")
    static = Path(f"/usr/bin/{arch.qemu}-static")
    if not static.is_file():
        raise BoardCpuUnavailable(f"{static} missing: QEMU user-mode emulation is not installed; run {FIX}")
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "status").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], "mounting binfmt_misc", 30)
    entry = misc / arch.qemu
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        _run(["update-binfmts", "--enable", arch.qemu], f"registering {arch.qemu} with binfmt_misc", 60)
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        raise BoardCpuUnavailable(f"{entry}: binfmt entry for {arch.qemu} not enabled after update-binfmts")


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another test run building the same root waits here
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _download_wheels(dest: Path) -> list[Path]:
    """PIP_PACKAGES as wheels from PyPI (this machine's pip); refused unless pure Python (they go onto ARM)."""
    if dest.exists():
        shutil.rmtree(dest)
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
          *PIP_PACKAGES], "downloading finn-plus-driver, qonnx and bitstring from PyPI", 600)
    wheels = sorted(dest.glob("*.whl"))
    foreign = [w.name for w in wheels if not w.name.endswith("-none-any.whl")]
    if len(wheels) != len(PIP_PACKAGES) or foreign:
        raise BoardCpuUnavailable(f"{dest}: expected {len(PIP_PACKAGES)} pure-Python wheels, got {[w.name for w in wheels]}")
    return wheels


def ensure_rootfs(arch_name: str, timeout: float = 1800) -> Path:
    """The cached root file system for ``arch_name`` ("armv7" or "aarch64"), built first if missing.

    Returns the root's path. Raises BoardCpuUnavailable (with the reason) where QEMU, binfmt_misc,
    mmdebstrap, the mirror or PyPI cannot be had. A build takes a few minutes; an interrupted one
    leaves only a temporary folder that the next build removes.
    """
    arch = ARCHES[arch_name]
    ensure_binfmt(arch)
    spec = rootfs_spec(arch, apt_mirror())
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_root() / f"{arch.name}-{key}"
    if (root / STAMP).is_file():
        return root
    if shutil.which("mmdebstrap") is None:
        raise BoardCpuUnavailable(f"mmdebstrap not found: cannot build the {arch.name} root file system; run {FIX}")
    with _lock(cache_root() / f"{arch.name}.lock"):
        if (root / STAMP).is_file():  # built by another run while we waited
            return root
        for stale in cache_root().glob(f".{arch.name}-*.building"):  # an interrupted build
            remove_tree(stale)
        tmp = cache_root() / f".{arch.name}-{key}.building"
        t0 = time.monotonic()
        wheels = _download_wheels(cache_root() / f".{arch.name}-wheels")
        _run(["mmdebstrap", f"--architectures={arch.debian}", "--variant=apt", "--mode=root",
              f"--include={','.join(DEBIAN_PACKAGES)}",
              # inside the root, with its /proc and /dev still mounted
              f'--customize-hook=mkdir -p "$1/tmp/wheels" && cp {" ".join(str(w) for w in wheels)} "$1/tmp/wheels/"',
              '--customize-hook=chroot "$1" sh -c "python3 -m pip install --quiet --no-index --no-deps '
              '--break-system-packages --disable-pip-version-check /tmp/wheels/*.whl && rm -r /tmp/wheels"',
              '--customize-hook=chroot "$1" python3 -c "import numpy, pytest, hypothesis, finn_plus_driver.packing"',
              SUITES[0], str(tmp), *[f"deb {spec['mirror']} {suite} main" for suite in SUITES]],
             f"building the {arch.name} ({arch.debian}) root file system", timeout)
        versions = run_in_rootfs(tmp, ["python3", "-c", "import json, platform, numpy; print(json.dumps("
                                       "{'python': platform.python_version(), 'numpy': numpy.__version__, "
                                       "'machine': platform.machine()}))"], timeout=300)
        stamp = {**spec, **json.loads(versions.stdout), "build_seconds": round(time.monotonic() - t0, 1),
                 "wheels_sha256": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2))
        os.replace(tmp, root)
    return root


def run_in_rootfs(root: Path, argv: list[str], cwd: str = "/", timeout: float = 900,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` inside ``root`` (chroot, the ARM binaries through QEMU) and return the finished process.

    A private mount namespace gives the root its own /proc, gone when the command ends. ``cwd`` is a
    path inside the root. Output is captured as text; the exit status is not checked here.
    """
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    # outer sh: $0 = cwd, "$@" = argv; the inner sh (inside the root) changes to cwd and runs argv
    script = 'mount -t proc proc "$ROOT/proc" && exec chroot "$ROOT" /bin/sh -c \'cd "$0" && exec "$@"\' "$0" "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script, cwd, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {}), "ROOT": str(root)})


@contextmanager
def workdir_in(root: Path):
    """A fresh folder under the root's /tmp: (path outside, path inside); removed afterwards."""
    outside = Path(tempfile.mkdtemp(prefix="bnnflow-", dir=root / "tmp"))
    try:
        yield outside, "/" + str(outside.relative_to(root))
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def copy_host(dest: Path) -> None:
    """host/'s Python files (what a deployment package carries) into dest/host."""
    (dest / "host").mkdir(parents=True)
    for py in (REPO / "host").glob("*.py"):
        shutil.copy2(py, dest / "host" / py.name)
