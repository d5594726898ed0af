#!/usr/bin/env bash
# Deletes the TPU VM (with --queued: its queued resource and the VM), which stops the billing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--zone ZONE] [--project PROJECT] [--queued] [--dry-run]
Environment variables: TPU_PROJECT, TPU_ZONE, TPU_NAME, TPU_QUEUED=1, DRY_RUN=1.
USAGE
}

parse_flags "" "--queued:TPU_QUEUED" "$@"
((${#COMMAND[@]} == 0)) || usage_error "unexpected arguments: ${COMMAND[*]}"
delete_tpu
