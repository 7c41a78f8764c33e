"""Snakemake script: the gate after validation and the report; exit 1 naming each failed verdict (host.verdicts)."""

import sys

terminal = sys.stderr
sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from host.refusal import exit_on_refusal  # noqa: E402
from host.verdicts import check_verdicts  # noqa: E402

with exit_on_refusal("check_validations"):  # an unreadable validation.json: one line, exit status 2
    status = check_verdicts(snakemake.input.validations, snakemake.output[0])  # noqa: F821
if status:
    print("check_validations: the run fails on these verdicts; validation.json and results/report.html keep the "
          "measurements", file=sys.stderr, flush=True)
    terminal.write(open(snakemake.log[0]).read())  # noqa: F821 - the failed verdicts on Snakemake's output too
sys.exit(status)
