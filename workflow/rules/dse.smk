# Design-space exploration (`snakemake dse`, not part of `all`): per model x board, the fastest folding within the
# board's fabric and I/O bounds (logic in hw_builds/dse/), each winner built and packaged like any design, then
# the Pareto front and the SetFolding comparison (results/dse/). One search job per model x board; searches and
# builds start from the model's FINN front end (frontend.smk), so streamlining runs once per model.


checkpoint search_folding:
    input:
        frontend="results/{model}/frontend/frontend.json",
        hw="results/{model}/frontend/hw.onnx",
    output:
        search="results/dse/{model}/{board}/search.json",
        folding="results/dse/{model}/{board}/folding.json",
    log:
        "logs/search_folding/{model}/{board}.log",
    benchmark:
        "benchmarks/search_folding/{model}/{board}.tsv"
    threads: 1
    resources:
        **stage_resources("search_folding"),
    conda:
        "../../environment.yml"
    params:
        clk_period_ns=config["finn"]["clk_period_ns"],
        fabric_limits=DSE.get("fabric_limits", {}),
        # SetFolding and the unbounded search at its throughput know nothing of the board: compared on the first one
        setfolding_fps=lambda wildcards: DSE.get("setfolding_fps", []) if wildcards.board == DSE["boards"][0] else [],
        setfolding_wwidth=DSE.get("setfolding_mvau_wwidth_max", [config["finn"]["mvau_wwidth_max"]]),
    script:
        "../scripts/search_folding.py"


rule build_dse_design:
    input:
        frontend="results/{model}/frontend/frontend.json",
        hw="results/{model}/frontend/hw.onnx",
        golden="results/{model}/export/golden.npz",
        folding=["results/dse/{model}/{board}/folding.json"],  # a list, as compile_finn.py reads it
    output:
        summary="hw_builds/{model}/{board}/dse/summary.json",
    log:
        "logs/build_dse_design/{model}/{board}.log",
    benchmark:
        "benchmarks/build_dse_design/{model}/{board}.tsv"
    threads: lambda wildcards: finn_build_resources(wildcards.board)["threads"]
    resources:
        mem_mb=finn_build_resource("mem_mb"),
        runtime=finn_build_resource("runtime"),
    conda:
        "../../environment.yml"
    params:
        out_dir=subpath(output.summary, parent=True),
        target=config["finn"]["target"],
        clk_period_ns=config["finn"]["clk_period_ns"],
        target_fps=None,  # the folding file sets every layer
        mvau_wwidth_max=config["finn"]["mvau_wwidth_max"],
        fail_if_not_fits=True,
        verify_samples=config["finn"]["verify_samples"],
    script:
        "../scripts/compile_finn.py"


rule package_dse_design:
    input:
        summary="hw_builds/{model}/{board}/dse/summary.json",
        xnor="results/{model}/xnor/xnor_model.npz",
        verify="results/{model}/xnor/verify.json",  # package_deployment.py carries its float-tie count
        dataset=dataset_npz,
        host=sorted(glob.glob("host/*.py")),
    output:
        directory("hw_builds/{model}/{board}/dse/deploy"),
    log:
        "logs/package_dse_design/{model}/{board}.log",
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
            "budgets": {key: config["validate"][key] for key in ("accuracy_min_pct", "latency_max_ms", "power_max_mw")},
        },
    script:
        "../scripts/package_deployment.py"


rule summarize_dse:
    input:
        searches=dse_searches(),
        metrics=[f"results/{model}/train/metrics.json" for model in DSE.get("models", [])],
        builds=dse_builds,
    output:
        csv=report("results/dse/summary.csv", category="Design-space exploration", labels={"file": "summary.csv"}),
        json="results/dse/summary.json",
        pareto=report("results/dse/pareto.png", category="Design-space exploration", labels={"file": "pareto"}),
        setfolding=report("results/dse/setfolding.png", category="Design-space exploration", labels={"file": "setfolding"}),
        table="results/dse/setfolding.csv",
        html=report("results/dse/report.html", category="Design-space exploration", labels={"file": "report.html"}),
    log:
        "logs/summarize_dse/summary.log",
    resources:
        **stage_resources("report"),
    conda:
        "../../environment.yml"
    script:
        "../scripts/summarize_dse.py"


rule dse:
    input:
        "results/dse/summary.csv",
