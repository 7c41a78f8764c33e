# Validation: the package's test set through the accelerator (FINN emulation on this machine) and the
# XNOR reference; exact agreement, latency, throughput, power and budgets (logic in host/validate.py).


rule validate_accelerator:
    input:
        package="hw_builds/{model}/{board}/deploy",
    output:
        report(
            "results/{model}/{board}/validation.json",
            category="Validation",
            labels={"model": "{model}", "board": "{board}"},
        ),
    log:
        "logs/validate_accelerator/{model}/{board}.log",
    benchmark:
        "benchmarks/validate_accelerator/{model}/{board}.tsv"
    threads: 1
    resources:
        **stage_resources("validate_accelerator"),
    conda:
        "../../environment.yml"
    params:
        backend="emulation",
    script:
        "../scripts/validate_accelerator.py"



# The gate: a failed verdict (a disagreement, a missed budget when enforce_budgets) fails the run here, after the
# report, so validation.json (kept by validate_accelerator whatever its verdict) and the report show why.
rule check_validations:
    input:
        validations=validation_reports,
        report="results/report.html",
    output:
        "results/verdicts.json",
    log:
        "logs/check_validations/verdicts.log",
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        "../../environment.yml"
    script:
        "../scripts/check_validations.py"
