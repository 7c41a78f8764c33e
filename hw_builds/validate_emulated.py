"""`host validate` with the FINN emulation backend: the FINN side hands its accelerator to host's validation.

host/ is copied to the board and imports nothing from hw_builds/; it opens the board backend itself and
takes any other backend as an opener from its caller (:func:`host.accelerator.open_accelerator`). This
module is that caller on the build machine: the same command line as ``python -m host``, with the FINN
emulation (:class:`hw_builds.emulation.EmulatedAccelerator`) supplied as ``--backend emulation``::

    python -m hw_builds.validate_emulated validate --package DIR --backend emulation --out validation.json

Exit status as ``python -m host``: 0 pass, 1 disagreement or failed budget, 2 refused input.
"""

from __future__ import annotations

import sys

from host.__main__ import main as host_main


def open_emulation(package, batch_size: int):
    """The emulated accelerator of a verified package (host.package.Package); ``batch_size`` is not needed.

    finn-plus is imported here, when the backend is opened, so that a refused package is refused
    before FINN loads; raises host.accelerator.BackendUnavailable where the package has no FINN model.
    """
    from hw_builds.emulation import EmulatedAccelerator

    return EmulatedAccelerator.from_package(package)


OPENERS = {"emulation": open_emulation}


def main(argv: list[str] | None = None) -> int:
    """``python -m host`` with the emulation backend supplied; returns the exit status."""
    return host_main(argv, openers=OPENERS)


if __name__ == "__main__":
    sys.exit(main())
