"""Snakemake script: XNOR reference vs PyTorch fp32 and Larq Compute Engine speed -> results/bench/xnor.json.

With LCE (xnor.bench_lce), the two worlds take turns under the same load: a `python -m larq_models bench-lce-serve`
process in the Larq environment converts and checks the bench nets (results/bench/nets/*.npz), then times one
(net, batch) per request line; hw_builds.xnor_bench.bench_xnor asks it for LCE's turn right before timing bnnflow's
engines on the same (net, batch), round after round (xnor.bench_rounds). This script is the only place that sees
both worlds: hw_builds never starts the Larq environment, larq_models never imports hw_builds.
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log["main"], "w", buffering=1)  # noqa: F821 - injected by Snakemake
sys.path.insert(0, snakemake.params.repo)  # noqa: F821 - workflow.lib (not an installed package)

from hw_builds.xnor_bench import bench_xnor  # noqa: E402
from workflow.lib.lce_peer import LcePeer  # noqa: E402

params = snakemake.params  # noqa: F821
peer = None
if snakemake.input.get("nets"):  # noqa: F821 - absent when xnor.bench_lce is false
    peer = LcePeer(params.python, params.repo, list(snakemake.input.nets), list(params.batch_sizes),  # noqa: F821
                   snakemake.log["lce"])  # noqa: F821
try:
    bench_xnor(
        out_json=snakemake.output[0],  # noqa: F821
        families=list(params.families),
        batch_sizes=list(params.batch_sizes),
        repeats=params.repeats,
        threads=snakemake.threads,  # noqa: F821
        seed=params.seed,
        lce_timer=peer,
        lce_meta=None if peer is None else peer.meta,
        rounds=params.rounds,
    )
finally:
    if peer is not None:
        peer.close()
