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
