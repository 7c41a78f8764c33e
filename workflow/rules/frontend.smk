# FINN front end: the board-independent steps (QONNX -> streamlined HW-layer graph), once per model, each
# verified against Brevitas on the golden set; the XNOR export and every per-board build read its graphs
# (logic in hw_builds/frontend.py; the split of the step list in hw_builds/build_config.py).


rule build_frontend:
    input:
        onnx="results/{model}/export/model.onnx",
        golden="results/{model}/export/golden.npz",
    output:
        streamlined="results/{model}/frontend/streamlined.onnx",
        hw="results/{model}/frontend/hw.onnx",
        record=report(
            "results/{model}/frontend/frontend.json",
            category="FINN builds",
            labels={"model": "{model}", "file": "front end"},
        ),
    log:
        "logs/build_frontend/{model}.log",
    benchmark:
        "benchmarks/build_frontend/{model}.tsv"
    threads: 1
    resources:
        **stage_resources("build_frontend"),
    conda:
        "../../environment.yml"
    params:
        out_dir=subpath(output.record, parent=True),
        verify_samples=config["finn"]["verify_samples"],
    script:
        "../scripts/build_frontend.py"
