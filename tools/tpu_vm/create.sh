#!/usr/bin/env bash
# Creates the TPU VM: one host (v5e-8, v4-8) or a pod slice (v5p-64, v4-32), on demand, spot, or
# through a queued resource that waits for capacity. Returns once the TPU is ready.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--zone ZONE] [--project PROJECT] [--accelerator-type TYPE]
                 [--runtime-version VERSION] [--spot] [--queued] [--poll SECONDS] [--dry-run]

  --accelerator-type  e.g. v5litepod-8 (or v5e-8), v4-8, v6e-8; pod slices v5p-64, v4-32, v5litepod-32
  --runtime-version   default: v2-alpha-tpuv6e (v6e), v2-alpha-tpuv5 (v5p), v2-alpha-tpuv5-lite (v5e),
                      tpu-ubuntu2204-base (v4 and older)
  --spot              a spot TPU: much cheaper, preempted whenever Google needs the capacity
  --queued            request a queued resource and wait until it is ACTIVE (with --spot: spot capacity)
  --poll              seconds between state checks while a queued resource waits (default 60)
  --dry-run-states    with --dry-run and --queued: the states to pretend to read, e.g. "WAITING_FOR_RESOURCES ACTIVE"
  --dry-run           print the gcloud commands instead of running them
Environment variables: TPU_PROJECT, TPU_ZONE, TPU_NAME, TPU_ACCELERATOR_TYPE, TPU_RUNTIME_VERSION,
TPU_SPOT=1, TPU_QUEUED=1, TPU_CREATE_FLAGS (more create flags, e.g. "--reserved"), DRY_RUN=1.
USAGE
}

POLL=${TPU_POLL_SECONDS:-60}
parse_flags "--poll:POLL" "--spot:TPU_SPOT --queued:TPU_QUEUED" "$@"
((${#COMMAND[@]} == 0)) || usage_error "unexpected arguments: ${COMMAND[*]}"

create_tpu
# A direct create returns when the VM is READY; a queued resource first waits for capacity.
if ((TPU_QUEUED)); then
  while read_state && [[ $STATE != ACTIVE ]]; do
    case $STATE in
      FAILED | SUSPENDED | NOT_FOUND) die "queued resource $TPU_NAME is $STATE" ;;
    esac
    log "queued resource $TPU_NAME is $STATE; checking again in ${POLL}s"
    run sleep "$POLL"
  done
fi
log "TPU $TPU_NAME ($TPU_ACCELERATOR_TYPE, $TPU_RUNTIME_VERSION) is ready in $TPU_ZONE"
