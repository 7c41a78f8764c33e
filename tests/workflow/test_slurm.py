"""The CI config on a real single-node SLURM through `snakemake --profile profiles/slurm`.

A module fixture starts Debian's SLURM 22.05 (munge, MariaDB, slurmdbd, slurmctld, slurmd; slurm_cluster.py)
on this machine and stops it afterwards; where that is impossible the tests fail with the reason. The jobs
must show in `sacct` with the resources the rules declare (memory, CPUs, time limit), their results must
equal the local run of the same config (conftest.py's pipeline_run: the same checkpoint bytes, the same
verification), and a hardware build on a node without Vivado must fail with the local run's message.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pipeline_helpers import CI_CONFIG, REPO, fresh_workdir, snakemake_env
from slurm_cluster import ACCOUNT, PARTITION, Cluster, ClusterError, start_cluster

pytestmark = [pytest.mark.pipeline, pytest.mark.slurm]

MODEL, BOARD = "tfc_w1a1", "Pynq-Z1"
# Every rule of `all` on the CI config except the data rules, which are localrules (submit host).
SLURM_RULES = {"train_model", "export_qonnx", "build_frontend", "compile_finn", "export_xnor", "verify_xnor", "package_deployment",
               "validate_accelerator", "bench_xnor", "predict_testset", "render_report"}
# The resource entry (workflow/config.yaml `resources:`) each rule reads.
STAGE = {rule: rule for rule in SLURM_RULES} | {"predict_testset": "report", "render_report": "report"}
SACCT_FIELDS = ("JobIDRaw", "JobName", "Comment", "ReqMem", "ReqCPUS", "Timelimit", "State", "ExitCode",
                "NodeList", "Account", "Partition", "MaxRSS", "Elapsed")


def merged_config() -> dict:
    """workflow/config.yaml with the CI config laid over it, as Snakemake merges them."""
    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return base

    return merge(yaml.safe_load((REPO / "workflow" / "config.yaml").read_text()), yaml.safe_load(CI_CONFIG.read_text()))


def declared(rule: str, config: dict) -> dict:
    """What the rule asks for on the CI config: CPUs, memory (MiB), time limit (minutes)."""
    threads = {"train_model": config["train"]["threads"], "bench_xnor": config["xnor"]["bench_threads"]}.get(rule, 1)
    entry = config["resources"][STAGE[rule]]
    return {"cpus": threads, "mem_mb": entry["mem_mb"], "runtime": entry["runtime"]}


def slurm_minutes(limit: str) -> int:
    """SLURM's [days-]hh:mm:ss as minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def rss_mb(value: str) -> float:
    """sacct's MaxRSS (e.g. 512K, 1.5G; empty for none) in MiB."""
    if not value:
        return 0.0
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(value[-1], 1 / 1024 / 1024)
    return float(value.rstrip("KMG")) * scale


def sacct(cluster: Cluster, steps: bool = False) -> list[dict]:
    out = cluster.run("sacct", "-P", "--noheader", "--allusers", "--starttime", "2000-01-01", *([] if steps else ["-X"]),
                      "--format", ",".join(SACCT_FIELDS))
    return [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line]


def rule_of(comment: str) -> str | None:
    """The rule name in the plugin's sbatch --comment: rule_<name> or rule_<name>_wildcards_<values>."""
    for rule in sorted(SLURM_RULES, key=len, reverse=True):
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"):
            return rule
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running single-node SLURM; stopped (every daemon it started) after the module."""
    started = time.perf_counter()
    try:
        running = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterError as error:
        pytest.fail(f"no SLURM test cluster on this machine: {error}", pytrace=False)
    print(f"\nSLURM test cluster up in {time.perf_counter() - started:.1f} s on {running.hostname} "
          f"({running.cpus} CPUs, {running.memory_mb} MiB): {running.run('sinfo', '-V').strip()}")
    yield running
    processes = list(running.processes.values())
    running.stop()
    assert all(p.poll() is not None for p in processes), "a SLURM daemon outlived the tests"


def snakemake_slurm(cluster: Cluster, workdir: Path, *args: str, configfiles: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """`snakemake --profile profiles/slurm` on the CI config (and configfiles over it) against the test cluster."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(CI_CONFIG), *map(str, configfiles), *args[:-1], "--profile", str(REPO / "profiles" / "slurm"),
           "--default-resources", f"slurm_account='{ACCOUNT}'", f"slurm_partition='{PARTITION}'",
           # the profile's first status check after 40 s suits a cluster; jobs here take seconds
           "--slurm-init-seconds-before-status-checks", "2", args[-1]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3000,
                          env=snakemake_env(SLURM_CONF=cluster.env["SLURM_CONF"],
                                            PATH=f"{cluster.root / 'bin'}:{snakemake_env()['PATH']}"))


@pytest.fixture(scope="module")
def slurm_run(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`snakemake all` on the CI config through SLURM, once; its working directory."""
    workdir = fresh_workdir(tmp_path_factory.mktemp("slurm_pipeline"))
    started = time.perf_counter()
    run = snakemake_slurm(cluster, workdir, "all")
    (workdir / "snakemake_stdout.txt").write_text(run.stdout + run.stderr)
    print(f"\nsnakemake --profile profiles/slurm all (CI config): {time.perf_counter() - started:.1f} s wall")
    assert run.returncode == 0, f"snakemake all on SLURM failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return workdir


def test_every_job_went_through_slurm_with_the_declared_resources(slurm_run: Path, cluster: Cluster) -> None:
    config = merged_config()
    jobs = [job for job in sacct(cluster) if rule_of(job["Comment"])]
    assert sorted(rule_of(job["Comment"]) for job in jobs) == sorted(SLURM_RULES), [j["Comment"] for j in jobs]
    for job in jobs:
        rule = rule_of(job["Comment"])
        want = declared(rule, config)
        assert (job["State"], job["ExitCode"]) == ("COMPLETED", "0:0"), (rule, job)
        assert job["NodeList"] == cluster.hostname and job["Partition"] == PARTITION and job["Account"] == ACCOUNT
        assert job["ReqMem"] == f"{want['mem_mb']}M", (rule, job["ReqMem"], want)
        assert int(job["ReqCPUS"]) == want["cpus"], (rule, job["ReqCPUS"], want)
        assert slurm_minutes(job["Timelimit"]) == want["runtime"], (rule, job["Timelimit"], want)
    # the data rules are localrules: they ran on the submit host, not as SLURM jobs
    assert (slurm_run / "resources" / "mnist.npz").is_file()


def test_declared_memory_covers_the_measured_peak(slurm_run: Path, cluster: Cluster) -> None:
    """jobacct_gather's MaxRSS (sampled every 5 s) of each job's steps stays below what its rule asks for."""
    peaks: dict[str, dict] = {}
    jobs = {job["JobIDRaw"]: job for job in sacct(cluster) if rule_of(job["Comment"])}
    for step in sacct(cluster, steps=True):
        job = jobs.get(step["JobIDRaw"].split(".")[0])
        if job is None:
            continue
        rule = rule_of(job["Comment"])
        entry = peaks.setdefault(rule, {"req_mem_mb": int(job["ReqMem"].rstrip("M")), "max_rss_mb": 0.0,
                                        "elapsed": job["Elapsed"]})
        entry["max_rss_mb"] = round(max(entry["max_rss_mb"], rss_mb(step["MaxRSS"])), 1)
    (slurm_run / "slurm_jobs.json").write_text(json.dumps(peaks, indent=1))
    print("\n" + json.dumps(peaks, indent=1))
    assert set(peaks) == SLURM_RULES
    assert any(p["max_rss_mb"] > 0 for p in peaks.values()), "sacct recorded no memory use at all"
    for rule, peak in peaks.items():
        assert peak["max_rss_mb"] < peak["req_mem_mb"], (rule, peak)


def test_results_equal_the_local_run(slurm_run: Path, pipeline_run: Path) -> None:
    train = Path("results", MODEL, "train")
    for run in (slurm_run, pipeline_run):
        assert read_json(run / train / "metrics.json")["checkpoint_sha256"] == sha256(run / train / "checkpoint.pt")
    assert sha256(slurm_run / train / "checkpoint.pt") == sha256(pipeline_run / train / "checkpoint.pt")
    verify = Path("results", MODEL, "xnor", "verify.json")
    assert read_json(slurm_run / verify)["passed"]
    assert read_json(slurm_run / verify) == read_json(pipeline_run / verify)
    xnor = Path("results", MODEL, "xnor", "xnor_model.npz")
    with np.load(slurm_run / xnor) as a, np.load(pipeline_run / xnor) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    summary = Path("hw_builds", MODEL, BOARD, "summary.json")
    for key in ("estimate", "verified_steps", "fits"):
        assert read_json(slurm_run / summary)[key] == read_json(pipeline_run / summary)[key], key
    validation = Path("results", MODEL, BOARD, "validation.json")
    ours, local = read_json(slurm_run / validation), read_json(pipeline_run / validation)
    assert ours["agreement"]["exact"]
    for key in ("images", "accuracy_pct", "reference_accuracy_pct", "agreement"):
        assert ours[key] == local[key], key
    assert (slurm_run / "results" / "report.html").stat().st_size > 10_000


def test_hardware_build_on_a_node_without_vivado_fails_with_the_local_message(
    slurm_run: Path, cluster: Cluster, tmp_path: Path
) -> None:
    """The submit host does not need Vivado; the job on the node checks and fails as a local run would."""
    from hw_builds.build_config import MissingXilinxToolsError, require_tools_for

    no_xilinx = {k: v for k, v in snakemake_env().items() if k not in ("XILINX_VIVADO", "XILINX_HLS")}
    with pytest.raises(MissingXilinxToolsError) as local:
        require_tools_for("hardware", no_xilinx)
    overrides = tmp_path / "hardware.yaml"
    # sized for the test node, not for Vivado; 2 threads (where the node has them) show threads reach sbatch
    threads = min(2, cluster.cpus)
    overrides.write_text(yaml.safe_dump({"finn": {"target": "hardware"}, "resources": {
        "compile_finn_hardware": {"threads": threads, "mem_mb": 2000, "runtime": 10, "boards": {}}}}))
    before = {job["JobIDRaw"] for job in sacct(cluster)}
    summary = f"hw_builds/{MODEL}/{BOARD}/summary.json"
    run = snakemake_slurm(cluster, slurm_run, "--retries", "0", "--forcerun", "compile_finn", summary,
                          configfiles=(overrides,))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    new_jobs = [job for job in sacct(cluster) if job["JobIDRaw"] not in before]
    assert [(rule_of(j["Comment"]), j["State"]) for j in new_jobs] == [("compile_finn", "FAILED")], output[-3000:]
    assert (new_jobs[0]["ReqCPUS"], new_jobs[0]["ReqMem"], slurm_minutes(new_jobs[0]["Timelimit"])) == (str(threads), "2000M", 10)
    # the job's Snakemake refuses before the rule starts, so the message is in SLURM's log of the job
    (log,) = (slurm_run / ".snakemake" / "slurm_logs" / "rule_compile_finn").glob(f"*/{new_jobs[0]['JobIDRaw']}.log")
    text = log.read_text()
    assert "MissingXilinxToolsError" in text and str(local.value) in text, text[-3000:]
