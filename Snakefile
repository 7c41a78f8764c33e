# bnnflow: Brevitas training -> QONNX -> FINN dataflow build -> PYNQ board, each stage checked
# against the previous one and against a software XNOR-popcount reference.
from snakemake.utils import min_version, validate

min_version("9.0")


# Spelled from the Snakefile's folder so that `snakemake -d <workdir>` (the tests) finds it too.
configfile: f"{workflow.basedir}/workflow/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all:
    input:
        all_targets(),
    default_target: True
