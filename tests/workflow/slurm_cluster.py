"""A real single-node SLURM on this machine for the tests: munge, MariaDB, slurmdbd, slurmctld, slurmd.

Debian 12's packages (SLURM 22.05, munge 0.5, MariaDB 10.11) are started by hand, as root, with every
file (keys, configs, state, spool, logs, sockets) under one temporary folder and every TCP port chosen
free, so nothing of the system's own configuration is read or changed. The node is the machine itself,
named by its real hostname, with its real CPU count and most of its memory. Accounting goes through
slurmdbd into MariaDB because the SLURM executor plugin asks ``sacct`` for job states and the tests ask
it for each job's requested resources: ``accounting_storage/none`` cannot answer ``sacct`` at all, and
``jobcomp/filetxt`` records neither the comment (rule name) nor the requested memory per job.

``start_cluster`` raises ``ClusterError`` with the reason (a missing package, a daemon that exited,
with the tail of its log) instead of returning something half started; ``Cluster.stop`` ends exactly
the processes it started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Debian packages that provide the daemons and clients below (the Makefile's SLURM_APT_PACKAGES).
APT_PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
BINARIES = ("munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd",
            "sacctmgr", "sbatch", "srun", "sacct", "sinfo", "scontrol")
CLUSTER, ACCOUNT, PARTITION = "bnnflow", "bnnflow", "bnnflow"


class ClusterError(RuntimeError):
    """SLURM could not be installed or started here; the message says why."""


@dataclass
class Cluster:
    """A running single-node cluster: ``env`` points SLURM's clients (sbatch, sacct, ...) at it."""

    root: Path
    hostname: str
    cpus: int
    memory_mb: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        """Stop the daemons this cluster started, newest first (SIGTERM, then SIGKILL after 20 s)."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.processes.clear()


def missing_binaries() -> list[str]:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def ensure_installed() -> None:
    """Install the Debian packages when a binary is missing (as root); else raise with the reason."""
    missing = missing_binaries()
    if not missing:
        return
    packages = " ".join(APT_PACKAGES)
    if os.geteuid() != 0:
        raise ClusterError(f"SLURM is not installed ({', '.join(missing)} missing) and installing it needs root: "
                           f"sudo apt-get install {packages} (or `make system-deps` as root)")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get "
                           f"to install Debian's {packages}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *APT_PACKAGES]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    if still := missing_binaries():
        raise ClusterError(f"after apt-get install {packages}, still missing: {', '.join(still)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb() -> int:
    """MemTotal from /proc/meminfo in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("/proc/meminfo has no MemTotal line")


def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _wait(what: str, ready, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ClusterError(f"{what} exited with {process.returncode} while starting:\n{_tail(log) if log else ''}")
        if ready():
            return
        time.sleep(0.5)
    raise ClusterError(f"{what} was not ready after {timeout:.0f} s:\n{_tail(log) if log else ''}")


def slurm_conf(root: Path, hostname: str, cpus: int, memory: int, ports: dict[str, int], munge_socket: Path) -> str:
    """slurm.conf for one node (this machine) in one partition, accounting through slurmdbd."""
    return f"""\
# Written by tests/workflow/slurm_cluster.py: a single-node test cluster on {hostname}.
ClusterName={CLUSTER}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={ports['slurmctld']}
SlurmdPort={ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# No cgroups needed (containers, CI runners): processes tracked by parent id, tasks not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={ports['slurmdbd']}
# the munge socket for talking to slurmdbd (AuthInfo covers slurmctld and slurmd only)
AccountingStoragePass={munge_socket}
# keep sbatch --comment (the plugin writes the rule name there) in the database for sacct
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# cores and memory are consumable: --mem and --cpus-per-task are what a job holds
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=10
NodeName={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster(root: Path, install: bool = True) -> Cluster:
    """Start munge, MariaDB, slurmdbd, slurmctld and slurmd under ``root``; a Cluster ready for sbatch.

    Raises ClusterError when not root, when the packages are missing and cannot be installed, or when a
    daemon exits or does not answer (the message carries the tail of its log). Daemons already started
    are stopped before the error propagates.
    """
    if os.geteuid() != 0:
        raise ClusterError("starting slurmctld/slurmd/slurmdbd/munged for the test cluster needs root "
                           f"(running as uid {os.geteuid()})")
    if install:
        ensure_installed()
    elif missing := missing_binaries():
        raise ClusterError(f"SLURM is not installed: {', '.join(missing)} missing")
    root = Path(root).resolve()
    for sub in ("state", "spool", "run", "log", "munge", "mysql"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "munge").chmod(0o755)  # clients need to reach the socket; the key stays 0600
    hostname = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    # leave the kernel and the daemons some memory: slurmd drains a node that reports less than RealMemory
    memory = int(memory_mb() * 0.9)
    ports = {name: free_port() for name in ("slurmctld", "slurmd", "slurmdbd")}
    munge_socket = root / "munge" / "munge.socket"
    mysql_socket = root / "mysql.sock"
    conf = _write(root / "slurm.conf", slurm_conf(root, hostname, cpus, memory, ports, munge_socket))
    # snakemake-executor-plugin-slurm-jobstep 0.6.1 strips every SLURM_* variable but the job's identity from
    # the environment of the srun it starts inside the job, SLURM_CONF included, so that srun would look for
    # /etc/slurm/slurm.conf (this cluster leaves /etc alone). An srun on PATH that names the config fixes that.
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    _write(bin_dir / "srun", f'#!/bin/sh\nSLURM_CONF={conf} exec {shutil.which("srun")} "$@"\n', mode=0o755)
    env = dict(os.environ, SLURM_CONF=str(conf), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("SLURM_JOB_ID", None)
    cluster = Cluster(root, hostname, cpus, memory, env)
    try:
        _start_munge(cluster, munge_socket)
        _start_mariadb(cluster, mysql_socket)
        _start_slurmdbd(cluster, ports["slurmdbd"], munge_socket, mysql_socket)
        _start_slurm(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(cluster: Cluster, name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(cluster.root / "log" / f"{name}.stdout", "w")
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env or cluster.env,
                               start_new_session=True)
    cluster.processes[name] = process
    return process


def _start_munge(cluster: Cluster, munge_socket: Path) -> None:
    key = cluster.root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    log = cluster.root / "log" / "munged.log"
    process = _spawn(cluster, "munged", [
        "munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
        f"--log-file={log}", f"--pid-file={cluster.root / 'run' / 'munged.pid'}",
        f"--seed-file={cluster.root / 'munge' / 'munged.seed'}",
    ], log)
    _wait("munged", munge_socket.exists, 30, process, log)


def _start_mariadb(cluster: Cluster, mysql_socket: Path) -> None:
    datadir = cluster.root / "mysql"
    log = cluster.root / "log" / "mariadb.log"
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                           "--skip-test-db", "--auth-root-authentication-method=socket"],
                          capture_output=True, text=True, timeout=300)
    if init.returncode != 0:
        raise ClusterError(f"mariadb-install-db failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
    process = _spawn(cluster, "mariadbd", [
        "mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={mysql_socket}", "--skip-networking",
        "--user=root", f"--pid-file={cluster.root / 'run' / 'mariadb.pid'}", f"--log-error={log}",
        "--innodb-buffer-pool-size=64M",
    ], log)
    _wait("mariadbd", mysql_socket.exists, 120, process, log)


def _start_slurmdbd(cluster: Cluster, port: int, munge_socket: Path, mysql_socket: Path) -> None:
    log = cluster.root / "log" / "slurmdbd.log"
    _write(cluster.root / "slurmdbd.conf", f"""\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost={cluster.hostname}
DbdAddr=127.0.0.1
DbdPort={port}
SlurmUser=root
LogFile={log}
PidFile={cluster.root / 'run' / 'slurmdbd.pid'}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
""", mode=0o600)
    # libmariadb connects to "localhost" through the socket named here, not the system's /run/mysqld
    env = dict(cluster.env, MYSQL_UNIX_PORT=str(mysql_socket), SLURM_CONF=str(cluster.root / "slurm.conf"))
    # slurmdbd has no option for its config file: it reads slurmdbd.conf beside $SLURM_CONF
    process = _spawn(cluster, "slurmdbd", ["slurmdbd", "-D"], log, env)

    def answers() -> bool:
        return subprocess.run(["sacctmgr", "-n", "list", "cluster"], env=cluster.env,
                              capture_output=True, timeout=30).returncode == 0

    _wait("slurmdbd", answers, 120, process, log)
    for args in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"Cluster={CLUSTER}", "Description=bnnflow tests"],
                 ["add", "user", "root", f"Account={ACCOUNT}", f"Cluster={CLUSTER}"]):
        cluster.run("sacctmgr", "-i", *args, check=False)  # "already exists" is fine; checked below
    users = cluster.run("sacctmgr", "-n", "-P", "list", "association", "format=cluster,account,user")
    if f"{CLUSTER}|{ACCOUNT}|root" not in users.split():
        raise ClusterError(f"sacctmgr did not record the association {CLUSTER}/{ACCOUNT}/root:\n{users}")


def _start_slurm(cluster: Cluster) -> None:
    ctld_log, d_log = cluster.root / "log" / "slurmctld.log", cluster.root / "log" / "slurmd.log"
    ctld = _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-c", "-i"], ctld_log)
    _wait("slurmctld", lambda: subprocess.run(["scontrol", "ping"], env=cluster.env, capture_output=True,
                                               timeout=30).returncode == 0, 60, ctld, ctld_log)
    slurmd = _spawn(cluster, "slurmd", ["slurmd", "-D", "-N", cluster.hostname], d_log)

    def node_idle() -> bool:
        state = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
        if state.startswith(("drain", "down")):
            cluster.run("scontrol", "update", f"nodename={cluster.hostname}", "state=resume", check=False)
        return state.startswith("idle")

    _wait("slurmd (node idle in sinfo)", node_idle, 90, slurmd, d_log)
