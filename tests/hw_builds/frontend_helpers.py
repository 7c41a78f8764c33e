"""The chain the pipeline runs from a checkpoint to the XNOR reference, for the hw_builds tests.

export stage (QONNX + golden set) -> FINN front end (hw_builds.frontend, every step verified on the
golden images) -> export_xnor from the front end's HW graph. verify_xnor then reads the front end's
streamlined and HW graphs, as the verify_xnor rule does.
"""

from __future__ import annotations

from pathlib import Path


def xnor_from_checkpoint(checkpoint: Path, data: Path, out: Path, name: str, n_golden: int = 10) -> dict[str, Path]:
    """Run the chain into ``out``; return the paths the tests use (checkpoint, onnx, npz, streamlined, hw, summary, ...)."""
    from hw_builds.frontend import build_frontend
    from hw_builds.xnor_export import export_xnor
    from models.export_stage import export_stage

    export_stage(checkpoint, data, out / "export", n_golden=n_golden)
    build_frontend(out / "export" / "model.onnx", out / "export" / "golden.npz", out / "frontend", name,
                   verify_samples=n_golden, progress=False)
    paths = {"checkpoint": Path(checkpoint), "onnx": out / "export" / "model.onnx", "golden": out / "export" / "golden.npz",
             "frontend": out / "frontend", "npz": out / "xnor" / "xnor_model.npz",
             "streamlined": out / "frontend" / "streamlined.onnx", "hw": out / "frontend" / "hw.onnx",
             "summary": out / "xnor" / "export.json", "data": data, "dir": out}
    export_xnor(paths["frontend"], paths["npz"], name, paths["summary"])
    return paths
