# Training stage: Brevitas quantization-aware training of each model (logic in models/train.py).


rule train_model:
    input:
        dataset=dataset_npz,
    output:
        checkpoint="results/{model}/train/checkpoint.pt",
        metrics=report("results/{model}/train/metrics.json", category="Training", labels={"model": "{model}", "file": "metrics"}),
        history="results/{model}/train/history.csv",
        curves=report("results/{model}/train/curves.png", category="Training", labels={"model": "{model}", "file": "curves"}),
        tensorboard=directory("results/{model}/train/tensorboard"),
    wildcard_constraints:
        model=BREVITAS_MODEL_RE,
    log:
        "logs/train_model/{model}.log",
    benchmark:
        "benchmarks/train_model/{model}.tsv"
    threads: config["train"]["threads"]
    resources:
        **stage_resources("train_model"),
    conda:
        "../../environment.yml"
    params:
        out_dir=subpath(output.checkpoint, parent=True),
        recipe=config["train"],  # defaults + overrides; models.train.TrainConfig.for_model picks this model's
        train_subset=config["data"]["train_subset"],
        test_subset=config["data"]["test_subset"],
        topology=lambda wildcards: topology_of(wildcards.model),  # None for a built-in name
        num_classes=lambda wildcards: classes_of(wildcards.model),
    script:
        "../scripts/train_model.py"
