# Larq models (<family>_w1a1_larq): training or a user's saved model, and the conversion to QONNX, run in the
# Larq environment (.venv-larq, `make larq-env`) as `python -m larq_models ...`, never in the main interpreter;
# the proof that qonnx computes what Larq computes runs in the main world (hw_builds/larq_proof.py) and only
# then publishes results/{model}/export/, from where FINN, the XNOR reference and validation take the model
# as they take a Brevitas one.
import json
import os
import re
import shutil
import sys


LARQ_PYTHON = config["larq"]["python"] or os.path.join(workflow.basedir, ".venv-larq", "bin", "python")
LARQ_FILES = config["larq"]["model_files"]
# Larq models taken from a user's file instead of trained (the empty alternative matches nothing).
LARQ_IMPORTED_RE = "|".join(re.escape(m) for m in LARQ_FILES) or r"(?!x)x"
if any(is_larq(m) for m in config["models"]) and not shutil.which(LARQ_PYTHON):
    # refused environment: one line, exit 2, as refuse_invalid_config
    print(f"config: refused: larq.python: {LARQ_PYTHON}: the Larq environment's interpreter is missing; Larq models "
          "in `models:` need it: run `make larq-env` (or set larq.python)", file=sys.stderr)
    sys.exit(2)
# A user's model file that is not there would otherwise leave import_larq without input and train_larq
# silently taking its place: refused at parse time (paths relative to the working directory, as rule inputs).
for _model, _file in LARQ_FILES.items():
    if not os.path.isfile(_file):
        print(f"config: refused: larq.model_files.{_model}: {_file} not found", file=sys.stderr)
        sys.exit(2)


# A model listed in larq.model_files is imported, not trained (import_larq matches only those names).
ruleorder: import_larq > train_larq


rule train_larq:
    input:
        dataset=dataset_npz,
    output:
        model="results/{model}/train/model.h5",
        metrics=report("results/{model}/train/metrics.json", category="Training", labels={"model": "{model}", "file": "metrics"}),
        history="results/{model}/train/history.csv",
        curves=report("results/{model}/train/curves.png", category="Training", labels={"model": "{model}", "file": "curves"}),
        tensorboard=directory("results/{model}/train/tensorboard"),
    log:
        "logs/train_larq/{model}.log",
    benchmark:
        "benchmarks/train_larq/{model}.tsv"
    wildcard_constraints:
        model=LARQ_MODEL_RE,
    threads: config["train"]["threads"]
    resources:
        **stage_resources("train_model"),  # the Brevitas stage's entry in config `resources:`
    conda:
        "../envs/larq.yml"
    params:
        python=LARQ_PYTHON,
        repo=workflow.basedir,
        out_dir=subpath(output.model, parent=True),
        recipe=json.dumps(config["train"]),  # the same recipe keys as Brevitas training (dropout must be 0)
        train_subset=cli_value(config["data"]["train_subset"]),
        test_subset=cli_value(config["data"]["test_subset"]),
    shell:
        "PYTHONPATH={params.repo:q} {params.python:q} -m larq_models train --model {wildcards.model}"
        " --dataset {input.dataset:q} --out-dir {params.out_dir:q} --recipe {params.recipe:q}"
        " --train-subset {params.train_subset} --test-subset {params.test_subset} > {log:q} 2>&1"


rule import_larq:
    input:
        model_file=lambda wildcards: LARQ_FILES[wildcards.model],
        dataset=dataset_npz,
    output:
        model="results/{model}/train/model.h5",
        metrics=report("results/{model}/train/metrics.json", category="Training", labels={"model": "{model}", "file": "metrics"}),
        history="results/{model}/train/history.csv",
        curves=report("results/{model}/train/curves.png", category="Training", labels={"model": "{model}", "file": "curves"}),
        tensorboard=directory("results/{model}/train/tensorboard"),
    log:
        "logs/import_larq/{model}.log",
    wildcard_constraints:
        model=LARQ_IMPORTED_RE,
    threads: 1
    resources:
        **stage_resources("export_qonnx"),  # the Brevitas stage's entry in config `resources:`
    conda:
        "../envs/larq.yml"
    params:
        python=LARQ_PYTHON,
        repo=workflow.basedir,
        out_dir=subpath(output.model, parent=True),
        recipe=json.dumps(config["train"]),  # only val_size and seed are used: the validation split
        train_subset=cli_value(config["data"]["train_subset"]),
        test_subset=cli_value(config["data"]["test_subset"]),
    shell:
        "PYTHONPATH={params.repo:q} {params.python:q} -m larq_models import --model {wildcards.model}"
        " --model-file {input.model_file:q} --dataset {input.dataset:q} --out-dir {params.out_dir:q}"
        " --recipe {params.recipe:q} --train-subset {params.train_subset} --test-subset {params.test_subset}"
        " > {log:q} 2>&1"


rule export_larq:
    input:
        model="results/{model}/train/model.h5",
        dataset=dataset_npz,
    output:
        onnx="results/{model}/larq/model.onnx",
        golden="results/{model}/larq/golden.npz",
        logits="results/{model}/larq/test_logits.npz",
        summary=report("results/{model}/larq/convert.json", category="Export", labels={"model": "{model}", "file": "convert"}),
    log:
        "logs/export_larq/{model}.log",
    benchmark:
        "benchmarks/export_larq/{model}.tsv"
    wildcard_constraints:
        model=LARQ_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("export_qonnx"),  # the Brevitas stage's entry in config `resources:`
    conda:
        "../envs/larq.yml"
    params:
        python=LARQ_PYTHON,
        repo=workflow.basedir,
        out_dir=subpath(output.onnx, parent=True),
        golden_samples=config["export"]["golden_samples"],
        seed=config["export"]["seed"],
        test_subset=cli_value(config["data"]["test_subset"]),
    shell:
        "PYTHONPATH={params.repo:q} {params.python:q} -m larq_models export --model-file {input.model:q}"
        " --dataset {input.dataset:q} --out-dir {params.out_dir:q} --golden-samples {params.golden_samples}"
        " --seed {params.seed} --test-subset {params.test_subset} > {log:q} 2>&1"


rule prove_larq_export:
    input:
        onnx="results/{model}/larq/model.onnx",
        golden="results/{model}/larq/golden.npz",
        logits="results/{model}/larq/test_logits.npz",
        dataset=dataset_npz,
    output:
        onnx="results/{model}/export/model.onnx",
        golden="results/{model}/export/golden.npz",
        roundtrip=report("results/{model}/export/roundtrip.json", category="Export", labels={"model": "{model}"}),
    log:
        "logs/prove_larq_export/{model}.log",
    benchmark:
        "benchmarks/prove_larq_export/{model}.tsv"
    wildcard_constraints:
        model=LARQ_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("export_qonnx"),  # the Brevitas stage's entry in config `resources:`
    conda:
        "../../environment.yml"
    params:
        larq_dir=subpath(input.onnx, parent=True),
        out_dir=subpath(output.onnx, parent=True),
        atol=config["larq"]["atol"],
        test_subset=config["data"]["test_subset"],
    script:
        "../scripts/prove_larq_export.py"


rule larq_test_predictions:
    input:
        "results/{model}/larq/test_logits.npz",
    output:
        "results/{model}/report/test_predictions.npz",
    log:
        "logs/larq_test_predictions/{model}.log",
    wildcard_constraints:
        model=LARQ_MODEL_RE,
    threads: 1
    resources:
        **stage_resources("report"),  # the Brevitas stage's entry in config `resources:`
    conda:
        "../../environment.yml"
    shell:
        # Larq's own forward on the test set (y_true, y_pred, logits, source), as the report's confusion matrix reads it
        "cp {input:q} {output:q} 2> {log:q}"
