"""Runs killed or stopped mid-way, for the resume tests."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time


def kill_after_checkpoint(command: list[str], workdir, step: int, *, cwd: str, timeout_s: float = 300,
                          sig: signal.Signals = signal.SIGKILL,
                          checkpoints: str = "checkpoints") -> subprocess.CompletedProcess:
    """Starts `command` and sends it `sig` as soon as `workdir/<checkpoints>/<step>` exists.

    Returns once it has ended, with its exit code and its output (stdout and stderr together).
    """
    with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: a full pipe would block the run
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not (workdir / checkpoints / str(step)).exists() and process.poll() is None:
                assert time.monotonic() < deadline, f"the run never saved step {step}"
                time.sleep(0.05)
            running = process.poll() is None
            if running:
                process.send_signal(sig)
        finally:
            process.wait()
        output.seek(0)
        text = output.read()
    assert running, f"the run ended (exit code {process.returncode}) before it could be stopped:\n{text[-3000:]}"
    return subprocess.CompletedProcess(command, process.returncode, text)
