# Export stage: QONNX model + golden inputs/outputs, checked by qonnx's executor (logic in models/export_stage.py).


rule export_qonnx:
    input:
        checkpoint="results/{model}/train/checkpoint.pt",
        dataset=dataset_npz,
    output:
        onnx="results/{model}/export/model.onnx",
        golden="results/{model}/export/golden.npz",
        roundtrip=report("results/{model}/export/roundtrip.json", category="Export", labels={"model": "{model}"}),
    wildcard_constraints:
        model=BREVITAS_MODEL_RE,
    log:
        "logs/export_qonnx/{model}.log",
    benchmark:
        "benchmarks/export_qonnx/{model}.tsv"
    threads: 1
    resources:
        **stage_resources("export_qonnx"),
    conda:
        "../../environment.yml"
    params:
        out_dir=subpath(output.onnx, parent=True),
        golden_samples=config["export"]["golden_samples"],
        seed=config["export"]["seed"],
        atol=config["export"]["atol"],
        test_subset=config["data"]["test_subset"],
    script:
        "../scripts/export_qonnx.py"
