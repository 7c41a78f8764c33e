# FINN stage: dataflow compilation per model and board from the model's front end (frontend.smk), every
# software step verified against Brevitas on the golden set (logic in hw_builds/compile.py; target
# hardware needs Vivado).


# A local run (no --jobs: Snakemake moves a local -j to --cores) builds on this machine, so it needs the tools
# here. A cluster run (--jobs from the profile) builds on the nodes: the Snakemake inside each job makes this
# same check on its node, and the submit host needs no Vivado.
if config["finn"]["target"] == "hardware" and workflow.resource_settings.nodes is None:
    from hw_builds.build_config import require_tools_for

    require_tools_for("hardware")  # no Vivado / Vitis HLS: refuse at start-up, before any job runs


rule compile_finn:
    input:
        frontend="results/{model}/frontend/frontend.json",
        hw="results/{model}/frontend/hw.onnx",
        golden="results/{model}/export/golden.npz",
        # the model's folding JSON from finn.folding_configs, if any (else FINN folds for target_fps)
        folding=lambda w: [config["finn"]["folding_configs"][w.model]] if w.model in config["finn"]["folding_configs"] else [],
    output:
        summary=report(
            "hw_builds/{model}/{board}/summary.json",
            category="FINN builds",
            labels={"model": "{model}", "board": "{board}"},
        ),
    log:
        "logs/compile_finn/{model}/{board}.log",
    benchmark:
        "benchmarks/compile_finn/{model}/{board}.tsv"
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
        target_fps=config["finn"]["target_fps"],
        mvau_wwidth_max=config["finn"]["mvau_wwidth_max"],
        fail_if_not_fits=config["finn"]["fail_if_not_fits"],
        verify_samples=config["finn"]["verify_samples"],
    script:
        "../scripts/compile_finn.py"
