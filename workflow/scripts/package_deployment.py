"""Snakemake script: assemble hw_builds/{model}/{board}/deploy/ (logic in host.package.package_from_build)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from host.package import package_from_build  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

# verify_xnor's float ties against Brevitas travel with the package into validation.json (README)
with exit_on_refusal("package_deployment"):  # refused input: one line in the log, exit status 2
    ties = json.loads(Path(snakemake.input.verify).read_text())["float_ties"]["count"]  # noqa: F821

    out = package_from_build(
        build_dir=snakemake.params.build_dir,  # noqa: F821
        xnor_npz=snakemake.input.xnor,  # noqa: F821
        dataset_npz=snakemake.input.dataset,  # noqa: F821
        out_dir=snakemake.output[0],  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
        validate_config={**snakemake.params.validate_config, "brevitas_float_ties": ties},  # noqa: F821
    )
    print(f"deployment package written to {out}")
