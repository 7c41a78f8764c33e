"""Snakemake script: FINN steps on the QONNX model -> xnor_model.npz (logic in hw_builds.xnor_export)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_export import export_xnor  # noqa: E402

export_xnor(
    onnx_path=snakemake.input.onnx,  # noqa: F821
    out_npz=snakemake.output.npz,  # noqa: F821
    model_name=snakemake.wildcards.model,  # noqa: F821
    streamlined_onnx=snakemake.output.streamlined,  # noqa: F821
    hw_onnx=snakemake.output.hw,  # noqa: F821
    summary_json=snakemake.output.summary,  # noqa: F821
)
