"""Snakemake script: `host validate` on a deployment package, with the FINN emulation handed in (logic in
host.validate; the backend from hw_builds.validate_emulated, since host/ does not import hw_builds/).

A measurement survives its verdict: on a disagreement with the XNOR reference or a failed budget (the
CLI's exit status 1) validation.json is written and kept, and this job succeeds; the check_validations
rule (host/verdicts.py) fails the run after the report. A refused package exits 2 with no output.
"""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.validate_emulated import main  # noqa: E402

out = Path(snakemake.output[0])  # noqa: F821
status = main(["validate", "--package", snakemake.input.package, "--backend", snakemake.params.backend,  # noqa: F821
               "--out", str(out)])
if status == 1 and out.is_file():
    print(f"validate_accelerator: verdict failed; {out} kept for the report, check_validations fails the run",
          flush=True)
    status = 0
sys.exit(status)
