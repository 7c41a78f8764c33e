"""Snakemake script: XNOR reference vs PyTorch fp32 and Larq Compute Engine speed -> results/bench/xnor.json.

With LCE (xnor.bench_lce), the two worlds take turns under the same load: a `python -m larq_models bench-lce-serve`
process in the Larq environment converts and checks the bench nets (results/bench/nets/*.npz), then times one
(net, batch) per request line; hw_builds.xnor_bench.bench_xnor asks it for LCE's turn right before timing bnnflow's
engines on the same (net, batch), round after round (xnor.bench_rounds). This script is the only place that sees
both worlds: hw_builds never starts the Larq environment, larq_models never imports hw_builds.
"""

import json
import os
import subprocess
import sys

sys.stderr = sys.stdout = open(snakemake.log["main"], "w", buffering=1)  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_bench import bench_xnor  # noqa: E402


class LcePeer:
    """The Larq world's timing process: started with the bench nets, asked for one (net, batch) at a time."""

    def __init__(self, python: str, repo: str, nets: list[str], batch_sizes: list[int], log_path: str):
        self.log_path = log_path
        self.log = open(log_path, "w")
        env = {**os.environ, "PYTHONPATH": repo}
        cmd = [python, "-m", "larq_models", "bench-lce-serve", "--nets", *(os.path.abspath(n) for n in nets),
               "--batch-sizes", *(str(b) for b in batch_sizes)]
        print("LCE peer:", " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)  # in the job's working directory, the repository on PYTHONPATH
        self.meta = self._reply("ready")

    def _reply(self, key: str):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"bench_xnor: the LCE process ended (exit {code}) without answering; see {self.log_path}")
        msg = json.loads(line)
        if key not in msg:
            raise RuntimeError(f"bench_xnor: the LCE process answered {msg.get('error', msg)!r}; see {self.log_path}")
        return msg[key]

    def __call__(self, family: str, batch: int, repeats: int, rounds: int) -> list[dict]:
        self.proc.stdin.write(json.dumps({"model": family, "batch": batch, "repeats": repeats, "rounds": rounds}) + "\n")
        self.proc.stdin.flush()
        return self._reply("rows")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


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
