"""Snakemake script: training accuracy vs epochs and wall time (logic in models.bench_training)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from models.bench_training import bench_training  # noqa: E402

bench_training(
    dataset_npz=snakemake.input.dataset,  # noqa: F821
    out_json=snakemake.output.json,  # noqa: F821
    work_dir=snakemake.params.work_dir,  # noqa: F821
    budgets=snakemake.params.budgets,  # noqa: F821
    recipe=snakemake.params.recipe,  # noqa: F821
    jobs=snakemake.threads,  # noqa: F821
    train_subset=snakemake.params.train_subset,  # noqa: F821
    test_subset=snakemake.params.test_subset,  # noqa: F821
)
