#!/usr/bin/env bash
# Runs one command on every worker of the TPU VM at once, in ~/r1jax with r1jax's virtualenv, and
# appends its output to a log file on each worker. On a pod slice every worker runs the same
# command and JAX connects the processes itself (jax.distributed.initialize needs no arguments on
# TPU VMs). Running the same command again in the same workdir resumes from its last checkpoint.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--zone ZONE] [--project PROJECT] [--log PATH] [--dry-run] -- COMMAND...

  e.g. $(basename "$0") -- python -m r1jax.main --config configs/tinyzero_qwen25_3b.py:v5e-8 \\
           --config.model.checkpoint=/mnt/gcs/models/Qwen2.5-3B --workdir /mnt/gcs/runs/tinyzero
  --log      the log file on each worker, under its home directory (default r1jax_logs/<name>.log)
  --dry-run  print the gcloud command instead of running it
Environment variables: TPU_PROJECT, TPU_ZONE, TPU_NAME, R1JAX_LOG, DRY_RUN=1.
USAGE
}

parse_flags "--log:R1JAX_LOG" "" "$@"
((${#COMMAND[@]} > 0)) || usage_error "give the command to run after --"
run_on_workers "${COMMAND[@]}"
