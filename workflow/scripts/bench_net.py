"""Snakemake script: one bench network's file for the Larq world -> results/bench/nets/{family}.npz (hw_builds.xnor_bench)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_bench import write_bench_net  # noqa: E402

write_bench_net(snakemake.wildcards.family, snakemake.params.seed, snakemake.output[0])  # noqa: F821
