# Training benchmark: test accuracy against epoch budget and wall time for the MLP families (models/bench_training.py).


rule bench_training:
    input:
        dataset=f"resources/{config['data']['mlp_dataset']}.npz",
    output:
        json=report("results/bench/training.json", category="Benchmarks"),
    log:
        "logs/bench_training/training.log",
    benchmark:
        "benchmarks/bench_training/training.tsv"
    threads: config["bench_training"]["jobs"]
    resources:
        **stage_resources("bench_training"),
    conda:
        "../../environment.yml"
    params:
        work_dir="results/bench/training_runs",
        budgets=config["bench_training"]["budgets"],
        recipe={k: v for k, v in config["train"].items() if k not in ("overrides", "epochs")},
        train_subset=config["data"]["train_subset"],
        test_subset=config["data"]["test_subset"],
    script:
        "../scripts/bench_training.py"
