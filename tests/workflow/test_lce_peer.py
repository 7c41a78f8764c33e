"""workflow/lib/lce_peer.py against a fake LCE timing process (stdlib only, no Larq): a peer that stops answering,
ends between replies or writes a line that is not JSON gives a RuntimeError naming the LCE log, within the
timeout, instead of a hang, a BrokenPipeError or a JSONDecodeError traceback (review of issue 14)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from workflow.lib.lce_peer import LcePeer

FAKE = """
import json, sys, time
mode = sys.argv[1]
print(json.dumps({"ready": {"lce": "fake"}}), flush=True)
if mode == "die_after_ready":
    sys.exit(3)
for line in sys.stdin:
    req = json.loads(line)
    if mode == "hang":
        time.sleep(3600)
    if mode == "garbage":
        print("INFO: tflite chatter", flush=True)
    elif mode == "error":
        print(json.dumps({"error": "logits differ"}), flush=True)
    else:
        print(json.dumps({"rows": [{"model": req["model"], "batch": req["batch"]}]}), flush=True)
"""


def _peer(tmp_path: Path, mode: str, timeout_s: float = 60.0) -> LcePeer:
    fake = tmp_path / "fake_peer.py"
    fake.write_text(FAKE)
    return LcePeer(sys.executable, str(tmp_path), [], [1], str(tmp_path / "lce.log"), timeout_s=timeout_s,
                   cmd=[sys.executable, str(fake), mode])


def test_a_peer_that_answers_gives_its_rows(tmp_path: Path) -> None:
    peer = _peer(tmp_path, "ok")
    try:
        assert peer.meta == {"lce": "fake"}
        assert peer("tfc", 5, 3, 1) == [{"model": "tfc", "batch": 5}]
    finally:
        peer.close()
    assert peer.proc.returncode == 0


@pytest.mark.parametrize(("mode", "fragment"), [
    ("hang", "gave no reply within 2 s (killed)"),
    ("die_after_ready", "ended (exit 3)"),
    ("garbage", "answered a line that is not JSON: 'INFO: tflite chatter'"),
    ("error", "answered 'logits differ'"),
])
def test_a_failing_peer_is_a_runtime_error_naming_the_log(tmp_path: Path, mode: str, fragment: str) -> None:
    peer = _peer(tmp_path, mode, timeout_s=2.0)
    if mode == "die_after_ready":
        peer.proc.wait(timeout=30)  # it has ended before the request is written: the write meets a closed pipe
    start = time.monotonic()
    try:
        with pytest.raises(RuntimeError) as err:
            peer("tfc", 1, 3, 1)
    finally:
        peer.close()
    assert time.monotonic() - start < 30
    assert fragment in str(err.value) and str(err.value).endswith(f"see {tmp_path / 'lce.log'}"), str(err.value)
    assert peer.proc.poll() is not None  # nothing left running
