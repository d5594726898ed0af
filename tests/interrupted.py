"""Runs killed mid-way, for the resume tests."""

from __future__ import annotations

import signal
import subprocess
import time


def kill_after_checkpoint(command: list[str], workdir, step: int, *, cwd: str, timeout_s: float = 300) -> None:
    """Starts `command` and SIGKILLs it as soon as `workdir/checkpoints/<step>` exists."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while not (workdir / "checkpoints" / str(step)).exists() and process.poll() is None:
            assert time.monotonic() < deadline, f"the run never saved step {step}"
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
