"""Runs killed or stopped mid-way, for the resume tests."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time


def signal_once_exists(command: list[str], path, *, cwd: str, timeout_s: float = 300,
                       sig: signal.Signals = signal.SIGKILL, env: dict[str, str] | None = None
                       ) -> subprocess.CompletedProcess:
    """Starts `command` and sends it `sig` as soon as `path` exists.

    Returns once it has ended, with its exit code and its output (stdout and stderr together).
    """
    with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: a full pipe would block the run
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not path.exists() and process.poll() is None:
                assert time.monotonic() < deadline, f"the run never wrote {path}"
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


def kill_after_checkpoint(command: list[str], workdir, step: int, *, cwd: str, timeout_s: float = 300,
                          sig: signal.Signals = signal.SIGKILL,
                          checkpoints: str = "checkpoints") -> subprocess.CompletedProcess:
    """`signal_once_exists` for the checkpoint of `step` in `workdir/<checkpoints>`."""
    return signal_once_exists(command, workdir / checkpoints / str(step), cwd=cwd, timeout_s=timeout_s, sig=sig)
