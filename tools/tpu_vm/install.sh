#!/usr/bin/env bash
# Copies this checkout to every worker of the TPU VM and installs it with jax[tpu]; with
# --gcs-bucket, also mounts the bucket on every worker (a workdir there survives preemption).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--zone ZONE] [--project PROJECT] [--gcs-bucket BUCKET]
                  [--python VERSION] [--dry-run]

  --gcs-bucket  a bucket name (no gs://), mounted with Cloud Storage FUSE at \$TPU_GCS_MOUNT (default /mnt/gcs)
  --python      the Python of the workers' virtualenv ~/r1jax-venv (default 3.11)
  --dry-run     print the commands instead of running them
Environment variables: TPU_PROJECT, TPU_ZONE, TPU_NAME, TPU_GCS_BUCKET, TPU_GCS_MOUNT, R1JAX_PYTHON, DRY_RUN=1.
USAGE
}

parse_flags "--gcs-bucket:TPU_GCS_BUCKET --python:R1JAX_PYTHON" "" "$@"
((${#COMMAND[@]} == 0)) || usage_error "unexpected arguments: ${COMMAND[*]}"
install_r1jax
