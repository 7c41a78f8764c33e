"""Snakemake script: `host validate` on a deployment package, with the FINN emulation handed in (logic in
host.validate; the backend from hw_builds.validate_emulated, since host/ does not import hw_builds/).

The exit status is the CLI's: 1 on a disagreement with the XNOR reference or a failed budget
(when enforce_budgets is set), 2 on a refused package, so the rule fails with the reason in the log.
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.validate_emulated import main  # noqa: E402

sys.exit(
    main(
        [
            "validate",
            "--package", snakemake.input.package,  # noqa: F821
            "--backend", snakemake.params.backend,  # noqa: F821
            "--out", snakemake.output[0],  # noqa: F821
        ]
    )
)
