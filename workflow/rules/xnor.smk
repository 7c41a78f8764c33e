# XNOR-popcount reference stage: binary weight export from the FINN front end's HW graph, bit-exact
# verification (against Brevitas and the front end's streamlined and HW graphs), speed benchmark
# (logic in hw_builds/xnor_export.py, hw_builds/xnor_verify.py, hw_builds/xnor_bench.py, host/xnor.py).


rule export_xnor:
    input:
        frontend="results/{model}/frontend/frontend.json",
        hw="results/{model}/frontend/hw.onnx",
    output:
        npz="results/{model}/xnor/xnor_model.npz",
        summary=report("results/{model}/xnor/export.json", category="XNOR reference", labels={"model": "{model}", "file": "export"}),
    log:
        "logs/export_xnor/{model}.log",
    benchmark:
        "benchmarks/export_xnor/{model}.tsv"
    wildcard_constraints:
        model=XNOR_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("export_xnor"),
    conda:
        "../../environment.yml"
    script:
        "../scripts/export_xnor.py"


rule verify_xnor:
    input:
        xnor="results/{model}/xnor/xnor_model.npz",
        streamlined="results/{model}/frontend/streamlined.onnx",
        hw="results/{model}/frontend/hw.onnx",
        checkpoint=framework_reference,  # Brevitas checkpoint, or a Larq model's test-set logits
        dataset=dataset_npz,
        # the first board's build: its final dataflow model runs in its generated types (hw_builds/typed_exec.py)
        build=lambda w: f"hw_builds/{w.model}/{config['boards'][0]}/summary.json",
    output:
        report("results/{model}/xnor/verify.json", category="XNOR reference", labels={"model": "{model}", "file": "verify"}),
    log:
        "logs/verify_xnor/{model}.log",
    benchmark:
        "benchmarks/verify_xnor/{model}.tsv"
    wildcard_constraints:
        model=XNOR_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("verify_xnor"),
    conda:
        "../../environment.yml"
    params:
        test_subset=config["data"]["test_subset"],
        finn_subset=config["xnor"]["verify_finn_subset"],
    script:
        "../scripts/verify_xnor.py"


rule bench_xnor:
    output:
        report("results/bench/xnor.json", category="Benchmarks", labels={"file": "xnor"}),
    log:
        "logs/bench_xnor/xnor.log",
    benchmark:
        "benchmarks/bench_xnor/xnor.tsv"
    threads: config["xnor"]["bench_threads"]
    resources:
        **stage_resources("bench_xnor"),
    conda:
        "../../environment.yml"
    params:
        families=config["xnor"]["bench_models"],
        batch_sizes=config["xnor"]["bench_batch_sizes"],
        repeats=config["xnor"]["bench_repeats"],
        seed=config["xnor"]["bench_seed"],
    script:
        "../scripts/bench_xnor.py"
