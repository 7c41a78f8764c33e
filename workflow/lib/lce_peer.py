"""The main world's side of LCE's timing process (``python -m larq_models bench-lce-serve`` in the Larq
environment): one JSON line per request on its stdin, one JSON line per reply on its stdout, its stderr in a log.

Used by workflow/scripts/bench_xnor.py, the only place that sees both worlds: hw_builds never starts the Larq
environment and larq_models never imports hw_builds; this module imports neither.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading

# Seconds to wait for one reply (the ready line: converting and checking every bench net; a row: one (net, batch)
# under every kernel setting). The README's interleaved runs took 6-7 minutes for all of them together (the bench
# nets' rule included), so an hour means the process stopped answering, not that it is slow.
REPLY_TIMEOUT_S = 3600.0


class LcePeer:
    """LCE's timing process, started with the bench nets and asked for one (net, batch) at a time.

    ``python``: the Larq environment's interpreter; ``repo``: the repository (on its PYTHONPATH); ``nets``: the
    bench net files (results/bench/nets/*.npz); ``batch_sizes``: the batches it prepares; ``log_path``: its
    stderr (logs/bench_xnor/lce.log); ``timeout_s``: the longest wait for one reply, seconds; ``cmd``: the command
    instead of ``python -m larq_models bench-lce-serve ...`` (tests start a fake peer). Raises RuntimeError naming
    ``log_path`` when the process ends, stops answering within ``timeout_s`` (it is killed), answers a line that is
    not JSON, or answers an error instead of ``ready`` / ``rows``.
    """

    def __init__(self, python: str, repo: str, nets: list[str], batch_sizes: list[int], log_path: str,
                 timeout_s: float = REPLY_TIMEOUT_S, cmd: list[str] | None = None):
        self.log_path, self.timeout_s = log_path, float(timeout_s)
        self.log = open(log_path, "w")
        env = {**os.environ, "PYTHONPATH": repo}
        if cmd is None:
            cmd = [python, "-m", "larq_models", "bench-lce-serve", "--nets", *(os.path.abspath(n) for n in nets),
                   "--batch-sizes", *(str(b) for b in batch_sizes)]
        print("LCE peer:", " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)  # in the job's working directory, the repository on PYTHONPATH
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.meta = self._reply("ready")
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        """Reader thread: the process's stdout lines into the queue, None at its end."""
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _fail(self, what: str) -> RuntimeError:
        return RuntimeError(f"bench_xnor: the LCE process {what}; see {self.log_path}")

    def _reply(self, key: str):
        try:
            line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait()
            raise self._fail(f"gave no reply within {self.timeout_s:g} s (killed)") from None
        if line is None:
            raise self._fail(f"ended (exit {self.proc.wait()}) without answering")
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            raise self._fail(f"answered a line that is not JSON: {line.strip()[:200]!r}") from None
        if not isinstance(msg, dict) or key not in msg:
            raise self._fail(f"answered {msg.get('error', msg) if isinstance(msg, dict) else msg!r}")
        return msg[key]

    def __call__(self, family: str, batch: int, repeats: int, rounds: int) -> list[dict]:
        """LCE's rows for ``family`` at ``batch`` (one dict per kernel setting), timed now."""
        try:
            self.proc.stdin.write(json.dumps({"model": family, "batch": batch, "repeats": repeats,
                                              "rounds": rounds}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"ended (exit {self.proc.wait()}) before the request for {family} batch {batch}") from None
        return self._reply("rows")

    def close(self) -> None:
        """Close its stdin and wait for it (killed after 120 s), then the log."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
