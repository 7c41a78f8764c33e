"""Snakemake script: XNOR reference vs PyTorch fp32 (and LCE) speed -> results/bench/xnor.json (hw_builds.xnor_bench)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_bench import bench_xnor  # noqa: E402

bench_xnor(
    out_json=snakemake.output[0],  # noqa: F821
    families=list(snakemake.params.families),  # noqa: F821
    batch_sizes=list(snakemake.params.batch_sizes),  # noqa: F821
    repeats=snakemake.params.repeats,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    lce_json=snakemake.input.get("lce"),  # noqa: F821 - absent when xnor.bench_lce is false
)
