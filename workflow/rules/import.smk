# Imported models (config imports:): a user's QONNX or FINN-ONNX file instead of training and export. The import is checked
# (hw_builds/model_import.py: format detection, qonnx clean-up, shape / datatype inference, the declared input,
# the exact definition FINN and the XNOR reference map) and refused with exit 2 naming the file and node before
# any long stage runs; it then publishes results/{model}/export/ as the export stage does, with qonnx's execution
# on the declared data as the golden set and as the reference the XNOR verification compares with.
import json


rule import_model:
    input:
        model_file=lambda wildcards: IMPORTS[wildcards.model]["path"],
        dataset=dataset_npz,
    output:
        onnx="results/{model}/export/model.onnx",
        golden="results/{model}/export/golden.npz",
        logits="results/{model}/export/test_logits.npz",
        roundtrip=report("results/{model}/export/roundtrip.json", category="Export", labels={"model": "{model}"}),
        metrics=report("results/{model}/train/metrics.json", category="Training", labels={"model": "{model}", "file": "metrics"}),
        history="results/{model}/train/history.csv",
    log:
        "logs/import_model/{model}.log",
    benchmark:
        "benchmarks/import_model/{model}.tsv"
    wildcard_constraints:
        model=IMPORT_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("export_qonnx"),  # the export stage's entry in config `resources:`
    conda:
        "../../environment.yml"
    params:
        python=sys.executable,
        repo=workflow.basedir,
        out_dir=subpath(output.onnx, parent=True),
        metrics_dir=subpath(output.metrics, parent=True),
        declared=lambda wildcards: json.dumps(IMPORTS[wildcards.model]),
        classes=lambda wildcards: classes_of(wildcards.model),
        golden_samples=config["export"]["golden_samples"],
        seed=config["export"]["seed"],
        test_subset=cli_value(config["data"]["test_subset"]),
        train_subset=cli_value(config["data"]["train_subset"]),
        val_size=config["train"]["val_size"],
        split_seed=config["train"]["seed"],
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} {params.python:q} -m hw_builds.model_import"
        " --model-file {input.model_file:q} --dataset {input.dataset:q} --out-dir {params.out_dir:q}"
        " --metrics-dir {params.metrics_dir:q} --declared {params.declared:q} --classes {params.classes}"
        " --golden-samples {params.golden_samples} --seed {params.seed} --test-subset {params.test_subset}"
        " --train-subset {params.train_subset} --val-size {params.val_size} --split-seed {params.split_seed}"
        " > {log:q} 2>&1"


rule import_test_predictions:
    input:
        "results/{model}/export/test_logits.npz",
    output:
        "results/{model}/report/test_predictions.npz",
    log:
        "logs/import_test_predictions/{model}.log",
    wildcard_constraints:
        model=IMPORT_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        "../../environment.yml"
    shell:
        # qonnx's execution of the imported graph on the test set (y_true, y_pred, logits, source), for the report
        "cp {input:q} {output:q} 2> {log:q}"
