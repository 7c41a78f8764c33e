# bnnflow: Brevitas training -> QONNX -> FINN dataflow build -> PYNQ board, each stage checked
# against the previous one and against a software XNOR-popcount reference.
from snakemake.utils import min_version

min_version("9.0")


# Spelled from the Snakefile's folder so that `snakemake -d <workdir>` (the tests) finds it too.
configfile: f"{workflow.basedir}/workflow/config.yaml"


include: "workflow/rules/common.smk"


# a config that violates the schema stops here: one line naming the key, exit status 2
refuse_invalid_config("workflow/schemas/config.schema.yaml")
refuse_dse_convolutions()
check_models_config()  # user topologies, data sets and imports FINN or the XNOR reference cannot take


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/larq.smk"
include: "workflow/rules/frontend.smk"
include: "workflow/rules/import.smk"
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
