"""Snakemake script: XNOR reference vs Brevitas vs FINN, bit-exact (logic in hw_builds.xnor_verify)."""

import json
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_verify import verify_xnor  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("verify_xnor"):  # refused input: one line in the log, exit status 2
    build = Path(snakemake.input.build).parent  # noqa: F821
    summary = json.loads(Path(snakemake.input.build).read_text())  # noqa: F821

    verify_xnor(
        xnor_npz=snakemake.input.xnor,  # noqa: F821
        checkpoint=snakemake.input.checkpoint,  # noqa: F821
        streamlined_onnx=snakemake.input.streamlined,  # noqa: F821
        hw_onnx=snakemake.input.hw,  # noqa: F821
        data_npz=snakemake.input.dataset,  # noqa: F821
        out_json=snakemake.output[0],  # noqa: F821
        model_name=snakemake.wildcards.model,  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
        finn_subset=snakemake.params.finn_subset,  # noqa: F821
        typed_onnx=build / summary["hw_model"],
        typed_parent=None if summary["partition_spans_network"] else build / summary["parent_model"],
    )
