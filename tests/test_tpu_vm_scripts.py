"""tools/tpu_vm: the scripts parse, their dry runs print the right gcloud commands, the command reaches the
workers' shell intact, and resume.sh recreates a preempted TPU and reruns the same command.

Dry runs print each command as `+ <shell-quoted words>`; `--dry-run-states` feeds the states the loops
would read. One test runs resume.sh for real against a fake `gcloud` that replays states.
"""

import glob
import os
import shlex
import subprocess
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools", "tpu_vm")
RUN_COMMAND = ["python", "-m", "r1jax.main", "--config", "configs/tinyzero_qwen25_3b.py:v5e-8",
               "--workdir", "/mnt/gcs/runs/tinyzero"]


def script(name: str, *args: str, env: dict | None = None, home: str = "/nonexistent") -> subprocess.CompletedProcess:
    # Only PATH from the caller: TPU_* variables set there must not leak into the defaults under test.
    environment = {"PATH": os.environ["PATH"], "HOME": home, **(env or {})}
    return subprocess.run(["bash", os.path.join(TOOLS, name), *args], capture_output=True, text=True,
                          env=environment, timeout=30)


def dry_run(name: str, *args: str, env: dict | None = None) -> list[list[str]]:
    """The commands a dry run prints, each split into its words."""
    result = script(name, "--dry-run", *args, env=env)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def gcloud(commands: list[list[str]], *subcommand: str) -> list[list[str]]:
    """The gcloud commands that start with `subcommand`, e.g. ("tpu-vm", "create")."""
    prefix = ["gcloud", "compute", "tpus", *subcommand]
    return [c for c in commands if c[:len(prefix)] == prefix]


def flag(command: list[str], name: str) -> str:
    values = [word.split("=", 1)[1] for word in command if word.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def actions(commands: list[list[str]]) -> list[str]:
    """What a resume loop did, in order: create, delete, copy, install, run (state reads and sleeps left out)."""
    names = []
    for c in commands:
        if c[:3] == ["gcloud", "compute", "tpus"] and c[4] in ("create", "delete", "scp"):
            names.append({"scp": "copy"}.get(c[4], c[4]))
        elif c[:3] == ["gcloud", "compute", "tpus"] and c[4] == "ssh":
            names.append("run" if "r1jax.main" in flag(c, "command") else "install")
    return names


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(TOOLS, "*.sh"))))
def test_every_script_parses(name):
    result = subprocess.run(["bash", "-n", os.path.join(TOOLS, name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("accelerator,gcloud_type,runtime", [
    ("v5e-8", "v5litepod-8", "v2-alpha-tpuv5-lite"),  # r1jax's machine name for gcloud's v5litepod
    ("v4-8", "v4-8", "tpu-ubuntu2204-base"),
    ("v6e-8", "v6e-8", "v2-alpha-tpuv6e"),
])
def test_create_a_single_host_tpu_vm(accelerator, gcloud_type, runtime):
    commands = dry_run("create.sh", "--accelerator-type", accelerator, "--name=grpo", "--zone", "us-central1-a")
    assert commands == [["gcloud", "compute", "tpus", "tpu-vm", "create", "grpo", "--zone=us-central1-a",
                         f"--accelerator-type={gcloud_type}", f"--version={runtime}"]]


def test_create_a_spot_pod_slice_from_the_environment_and_flags_override_it():
    env = dict(TPU_ACCELERATOR_TYPE="v4-32", TPU_SPOT="1", TPU_PROJECT="my-project", TPU_ZONE="us-central2-b")
    [create] = dry_run("create.sh", env=env)
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "r1jax", "--zone=us-central2-b",
                      "--project=my-project", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot"]
    [create] = dry_run("create.sh", "--zone", "europe-west4-a", env=env)
    assert flag(create, "zone") == "europe-west4-a"


def test_a_queued_resource_is_requested_and_waited_for_until_active():
    commands = dry_run("create.sh", "--accelerator-type", "v5p-64", "--queued", "--spot", "--poll", "5",
                       "--dry-run-states", "WAITING_FOR_RESOURCES PROVISIONING ACTIVE")
    assert commands[0] == ["gcloud", "compute", "tpus", "queued-resources", "create", "r1jax", "--zone=us-west4-a",
                           "--node-id=r1jax", "--accelerator-type=v5p-64", "--runtime-version=v2-alpha-tpuv5", "--spot"]
    describe = ["gcloud", "compute", "tpus", "queued-resources", "describe", "r1jax", "--zone=us-west4-a",
                "--format=value(state.state)"]
    assert commands[1:] == [describe, ["sleep", "5"], describe, ["sleep", "5"], describe]


def test_a_failed_queued_resource_stops_create():
    result = script("create.sh", "--dry-run", "--queued", "--dry-run-states", "FAILED")
    assert result.returncode == 1 and "queued resource r1jax is FAILED" in result.stderr


def test_install_copies_the_checkout_and_installs_on_every_worker():
    commands = dry_run("install.sh", "--gcs-bucket", "my-bucket")
    [scp] = gcloud(commands, "tpu-vm", "scp")
    [ssh] = gcloud(commands, "tpu-vm", "ssh")
    tarball = scp[5]
    assert commands[0][-2:] == [REPO, tarball]  # the pack command writes the file scp sends
    assert "--worker=all" in scp and scp[6] == "r1jax:/tmp/r1jax.tar.gz"
    assert "--worker=all" in ssh
    remote = flag(ssh, "command")
    assert subprocess.run(["bash", "-n", "-c", remote]).returncode == 0  # what the workers' shell parses
    for step in ("tar -xzf /tmp/r1jax.tar.gz -C ~/r1jax", "uv venv --quiet --allow-existing --python 3.11 ~/r1jax-venv",
                 "'jax[tpu]' -e ~/r1jax", "sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq gcsfuse",
                 "gcsfuse --implicit-dirs --metadata-cache-ttl-secs=0 --metadata-cache-negative-ttl-secs=0 my-bucket "
                 "/mnt/gcs"):
        assert step in remote
    assert "gcsfuse" not in flag(gcloud(dry_run("install.sh"), "tpu-vm", "ssh")[0], "command")


def test_run_hands_the_command_intact_to_every_worker_and_logs_it(tmp_path):
    command = ["printf", "%s|", "two words", "it's", "$HOME", "a;b"]
    [ssh] = dry_run("run.sh", "--log", "logs/job.log", "--", *command)
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "r1jax"] and "--worker=all" in ssh
    # What a worker's shell does with it, in a fake home with the virtualenv and checkout it expects.
    (tmp_path / "r1jax-venv" / "bin").mkdir(parents=True)
    (tmp_path / "r1jax-venv" / "bin" / "activate").write_text("")
    (tmp_path / "r1jax").mkdir()
    worker = subprocess.run(["bash", "-c", flag(ssh, "command")], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout == "two words|it's|$HOME|a;b|"
    assert (tmp_path / "logs" / "job.log").read_text() == worker.stdout


@pytest.mark.parametrize("args,message", [
    ((), "give the command to run after --"),
    (("--zone",), "--zone needs a value"),
    (("--workers", "all", "--", "true"), "unknown argument: --workers"),
])
def test_usage_mistakes_exit_2_naming_them(args, message):
    result = script("run.sh", *args)
    assert result.returncode == 2 and message in result.stderr


def test_resume_recreates_a_preempted_tpu_and_reruns_the_same_command():
    commands = dry_run("resume.sh", "--spot", "--poll", "7", "--dry-run-states", "NOT_FOUND READY PREEMPTED READY",
                       "--", *RUN_COMMAND)
    assert actions(commands) == ["create", "copy", "install", "run", "delete", "create", "copy", "install", "run"]
    first_run, second_run = [c for c in commands if c[4:5] == ["ssh"] and "r1jax.main" in flag(c, "command")]
    assert first_run == second_run and shlex.join(RUN_COMMAND) in flag(first_run, "command")
    assert all("--spot" in c for c in gcloud(commands, "tpu-vm", "create"))
    # Each run is judged by the state read after a wait: READY after the second one ends the loop.
    assert commands[-2:] == [["sleep", "7"], gcloud(commands, "tpu-vm", "describe")[0]]


def test_resume_replaces_a_suspended_queued_resource_with_its_node():
    commands = dry_run("resume.sh", "--queued", "--accelerator-type", "v5p-64",
                       "--dry-run-states", "ACTIVE SUSPENDED WAITING_FOR_RESOURCES ACTIVE", "--", *RUN_COMMAND)
    assert actions(commands) == ["copy", "install", "run", "delete", "create", "copy", "install", "run"]
    [delete] = gcloud(commands, "queued-resources", "delete")
    assert delete == ["gcloud", "compute", "tpus", "queued-resources", "delete", "r1jax", "--zone=us-west4-a",
                      "--force", "--quiet"]


FAKE_GCLOUD = """#!/usr/bin/env bash
# Records its arguments; `describe` answers with the next line of $FAKE_STATES (NOT_FOUND as gcloud's
# error), READY when none is left; the r1jax run exits with $FAKE_RUN_STATUS.
printf '%s\\n' "$*" >> "$FAKE_LOG"
case "$*" in
  *" describe "*)
    state=$(head -n 1 "$FAKE_STATES")
    tail -n +2 "$FAKE_STATES" > "$FAKE_STATES.rest" && mv "$FAKE_STATES.rest" "$FAKE_STATES"
    if [[ $state == NOT_FOUND ]]; then
      echo "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource 'r1jax' was not found" >&2; exit 1
    fi
    echo "${state:-READY}" ;;
  *r1jax.main*) exit "$FAKE_RUN_STATUS" ;;
esac
"""


def test_resume_retries_a_failing_command_on_a_healthy_tpu_then_gives_up(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    (tmp_path / "states").write_text("NOT_FOUND\nCREATING\n")
    env = dict(PATH=f"{bin_dir}:{os.environ['PATH']}", TMPDIR=str(tmp_path), FAKE_LOG=str(tmp_path / "calls"),
               FAKE_STATES=str(tmp_path / "states"), FAKE_RUN_STATUS="3")
    result = script("resume.sh", "--poll", "0", "--max-failures", "2", "--", *RUN_COMMAND, env=env, home=str(tmp_path))
    assert result.returncode == 1
    assert "the command exited with status 3 (2 of 2 failures in a row)" in result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [" ".join(c.split()[2:4]) for c in calls] == [
        "tpu-vm describe", "tpu-vm create",  # NOT_FOUND from gcloud's error message
        "tpu-vm describe",  # CREATING: wait
        "tpu-vm describe", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh",  # READY: install, run (fails)
        "tpu-vm describe", "tpu-vm ssh",  # still READY: the failure is the command's; run again, no reinstall
        "tpu-vm describe"]  # fails again: give up
    # The copy sent to the workers: the checkout's source files, without its git directory.
    with tarfile.open(tmp_path / "r1jax-r1jax.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"r1jax/main.py", "tools/tpu_vm/resume.sh", "setup.py"} <= names
    assert not any(name.startswith(".git/") or "__pycache__" in name for name in names)
