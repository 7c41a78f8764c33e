# bnnflow: Brevitas training -> QONNX -> FINN dataflow build -> PYNQ board, each stage checked
# against the previous one and against a software XNOR-popcount reference.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


# Spelled from the Snakefile's folder so that `snakemake -d <workdir>` (the tests) finds it too.
configfile: f"{workflow.basedir}/workflow/config.yaml"


def refuse_invalid_config(schema: str) -> None:
    """Validate the config; a violation is one line naming the key (train.overrides.tfc_w1a1.lr) and exit 2."""
    try:
        validate(config, schema)
    except WorkflowError as err:
        cause = err.__context__  # jsonschema's ValidationError (WorkflowError keeps only its text)
        if not hasattr(cause, "absolute_path"):
            raise
        key = ".".join(str(part) for part in cause.absolute_path) or "(top level)"
        print(f"config: refused: {key}: {cause.message} (schema: {schema})", file=sys.stderr)
        sys.exit(2)  # refused input, as every bnnflow stage exits on it


refuse_invalid_config("workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/larq.smk"
include: "workflow/rules/frontend.smk"
include: "workflow/rules/compile_finn.smk"
include: "workflow/rules/xnor.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/bench_training.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dse.smk"


rule all:
    input:
        all_targets(),
    default_target: True
