"""The one place where bnnflow works around finn-plus import-time traps (no source patches).

finn-plus 1.6.1 does ``from finn.xsi import SimEngine`` at module level in
``finn.builder.build_dataflow_steps``; without Vivado that import raises
``OSError: XILINX_VIVADO environment variable not set``. Setting ``finn.xsi.SimEngine = None``
first lets the software steps import; the rtlsim steps that would use it still fail, loudly,
when a hardware target runs without Vivado (which bnnflow refuses earlier anyway).
FINN also requires ``FINN_BUILD_DIR`` to name an existing directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType


def prepare_finn_environment(build_dir: str | Path | None = None) -> Path:
    """Make sure FINN_BUILD_DIR exists and neutralise the XSI import trap; return the build dir.

    Without ``build_dir`` and without ``FINN_BUILD_DIR`` set, each process gets its own fresh folder under the
    temporary directory ($TMPDIR: node-local on a cluster), so concurrent jobs on one node never share FINN's
    scratch files; the first call sets FINN_BUILD_DIR, later calls in the process reuse it.
    """
    if build_dir is None:
        build_dir = os.environ.get("FINN_BUILD_DIR") or tempfile.mkdtemp(prefix="bnnflow_finn_build_")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    if not os.environ.get("XILINX_VIVADO"):
        import finn.xsi

        try:
            finn.xsi.SimEngine  # noqa: B018 - probing the attribute is what triggers the trap
        except (OSError, AttributeError):
            pass
        finn.xsi.SimEngine = None
    return build_dir


def import_build_steps() -> ModuleType:
    """Import ``finn.builder.build_dataflow_steps`` with the environment prepared."""
    prepare_finn_environment()
    import finn.builder.build_dataflow_steps as steps

    return steps
