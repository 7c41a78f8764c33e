# Deployment package per model and board: what `host validate` needs on a board, sha256-manifested
# (logic in host/package.py; the package layout is documented there and in its README.md).
import glob


rule package_deployment:
    input:
        summary="hw_builds/{model}/{board}/summary.json",
        xnor="results/{model}/xnor/xnor_model.npz",
        verify="results/{model}/xnor/verify.json",
        dataset=dataset_npz,
        host=sorted(glob.glob("host/*.py")),
    output:
        directory("hw_builds/{model}/{board}/deploy"),
    log:
        "logs/package_deployment/{model}/{board}.log",
    threads: 1
    resources:
        **stage_resources("package_deployment"),
    conda:
        "../../environment.yml"
    params:
        build_dir=subpath(input.summary, parent=True),
        test_subset=config["data"]["test_subset"],
        validate_config=lambda wildcards: {
            "batch_size": config["validate"]["batch_size"],
            "latency_repeats": config["validate"]["latency_repeats"],
            "enforce_budgets": config["validate"]["enforce_budgets"],
            "budgets": {
                key: config["validate"][key]
                for key in ("accuracy_min_pct", "latency_max_ms", "power_max_mw")
            },
        },
    script:
        "../scripts/package_deployment.py"
