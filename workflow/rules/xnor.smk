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


# The XNOR benchmark's peer, Larq Compute Engine (xnor.bench_lce): the same random networks go to the Larq world as
# files (results/bench/nets/{family}.npz, with bnnflow's logits on check images); bench_xnor starts LCE's timing
# process in .venv-larq (larq_models/bench_lce.py: converted, logits checked equal, every kernel setting) and takes
# turns with it, (net, batch) by (net, batch), round by round, so that both are timed under the same load.
# (shutil, sys and LARQ_PYTHON come from larq.smk, included before this file.)
if config["xnor"]["bench_lce"] and not shutil.which(LARQ_PYTHON):
    # refused environment: one line, exit 2, as refuse_invalid_config
    print(f"config: refused: xnor.bench_lce: {LARQ_PYTHON}: the Larq environment's interpreter is missing; xnor.bench_lce "
          "times Larq Compute Engine there: run `make larq-env` (or set larq.python, or xnor.bench_lce: false)",
          file=sys.stderr)
    sys.exit(2)


rule bench_net:
    output:
        "results/bench/nets/{family}.npz",
    log:
        "logs/bench_net/{family}.log",
    wildcard_constraints:
        family="tfc|sfc|lfc|cnv",
    threads: 1
    resources:
        **stage_resources("bench_xnor"),
    conda:
        "../../environment.yml"
    params:
        seed=config["xnor"]["bench_seed"],
    script:
        "../scripts/bench_net.py"


rule bench_xnor:
    input:
        **({"nets": expand("results/bench/nets/{family}.npz", family=config["xnor"]["bench_models"])}
           if config["xnor"]["bench_lce"] else {}),
    output:
        report("results/bench/xnor.json", category="Benchmarks", labels={"file": "xnor"}),
    log:
        main="logs/bench_xnor/xnor.log",
        lce="logs/bench_xnor/lce.log",
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
        rounds=config["xnor"]["bench_rounds"],
        seed=config["xnor"]["bench_seed"],
        python=LARQ_PYTHON,  # LCE's timing process (with xnor.bench_lce)
        repo=workflow.basedir,
    script:
        "../scripts/bench_xnor.py"
