#!/usr/bin/env bash
# Keeps one command running on a (spot or queued) TPU VM until it finishes: creates the TPU when it
# is missing, recreates it when it was preempted, reinstalls r1jax on the new workers and reruns the
# same command, which resumes from the last checkpoint in its workdir. That workdir must outlive the
# VM: put it in the bucket that --gcs-bucket mounts. Run this where it can stay up for the whole
# run (tmux on a small VM, say): the job's SSH sessions end with it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--zone ZONE] [--project PROJECT] [--accelerator-type TYPE]
                 [--runtime-version VERSION] [--spot] [--queued] [--gcs-bucket BUCKET] [--python VERSION]
                 [--log PATH] [--poll SECONDS] [--max-failures N] [--dry-run [--dry-run-states STATES]]
                 -- COMMAND...

  e.g. $(basename "$0") --accelerator-type v5p-64 --queued --spot --gcs-bucket my-bucket -- \\
           python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py:v5p-16 --workdir /mnt/gcs/runs/r1zero
  Flags as for create.sh, install.sh and run.sh, and:
  --poll            seconds between state checks, and the wait after a run before judging it (default 60)
  --max-failures    give up after this many failed creates, installs or runs in a row on a TPU that was
                    not preempted (default 5)
  --dry-run-states  with --dry-run: the states the dry run pretends to read, in order, e.g.
                    "NOT_FOUND READY PREEMPTED READY"; when they run out, the ready state
USAGE
}

POLL=${TPU_POLL_SECONDS:-60}
MAX_FAILURES=${TPU_MAX_FAILURES:-5}
parse_flags "--gcs-bucket:TPU_GCS_BUCKET --python:R1JAX_PYTHON --log:R1JAX_LOG --poll:POLL
  --max-failures:MAX_FAILURES" "--spot:TPU_SPOT --queued:TPU_QUEUED" "$@"
((${#COMMAND[@]} > 0)) || usage_error "give the command to run after --"

failures=0
failed() {
  failures=$((failures + 1))
  log "$1 ($failures of $MAX_FAILURES failures in a row)"
  ((failures < MAX_FAILURES)) || die "giving up"
}

installed=0
last_run=none  # the exit status of the last run, judged once the TPU's state after it is known
while true; do
  read_state
  case $STATE in
    READY | ACTIVE)
      # The TPU outlived the last run: its exit status is the run's own.
      case $last_run in
        none) ;;
        0) log "the command finished on every worker"; exit 0 ;;
        75) log "the command saved and stopped on a signal (exit 75); running it again" ;;
        *) failed "the command exited with status $last_run" ;;
      esac
      if ((!installed)); then
        if install_r1jax; then installed=1; failures=0; else failed "installing failed"; run sleep "$POLL"; continue; fi
      fi
      log "running on every worker of $TPU_NAME: $(quote "${COMMAND[@]}")"
      if run_on_workers "${COMMAND[@]}"; then last_run=0; else last_run=$?; fi
      # A preempted VM may let the run exit (even cleanly: SIGTERM saves and exits) before its state
      # changes; the state after this wait tells a preemption from the run's own end.
      log "the command returned $last_run; checking the TPU in ${POLL}s"
      run sleep "$POLL"
      ;;
    PREEMPTED | TERMINATED | STOPPED | SUSPENDED | FAILED | NOT_FOUND)
      log "TPU $TPU_NAME is $STATE: creating a new one"
      installed=0
      last_run=none
      if [[ $STATE != NOT_FOUND ]] && ! delete_tpu; then
        failed "deleting failed"; run sleep "$POLL"
      elif create_tpu; then
        failures=0
      else
        failed "creating failed"; run sleep "$POLL"
      fi
      ;;
    *)  # on its way: CREATING, WAITING_FOR_RESOURCES, PROVISIONING, DELETING, ...; or UNKNOWN
      log "TPU $TPU_NAME is $STATE; checking again in ${POLL}s"
      run sleep "$POLL"
      ;;
  esac
done
