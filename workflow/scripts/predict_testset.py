"""Snakemake script: the checkpoint's predictions on the test set, for the confusion matrix (logic in models.predict)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from models.predict import predict_testset  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("predict_testset"):  # refused input: one line in the log, exit status 2
    figures = predict_testset(
        checkpoint=snakemake.input.checkpoint,  # noqa: F821
        dataset_npz=snakemake.input.dataset,  # noqa: F821
        metrics_json=snakemake.input.metrics,  # noqa: F821
        out_npz=snakemake.output[0],  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
    )
    print(figures)
