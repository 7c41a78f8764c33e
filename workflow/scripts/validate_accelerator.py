"""Snakemake script: `python -m host validate` on a deployment package (logic in host.validate).

The exit status is the CLI's: 1 on a disagreement with the XNOR reference or a failed budget
(when enforce_budgets is set), 2 on a refused package, so the rule fails with the reason in the log.
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from host.__main__ import main  # noqa: E402

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
