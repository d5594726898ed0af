# Shared by the TPU VM scripts (sourced, not run): settings, flag parsing, the dry-run switch and one
# function per gcloud action. Written for bash 3.2 too (macOS), so no associative arrays, and empty
# arrays are expanded as ${a[@]+"${a[@]}"} (bash < 4.4 calls "${a[@]}" unbound under `set -u`).

# Settings: a flag overrides its environment variable, which overrides the default.
TPU_PROJECT=${TPU_PROJECT:-}                            # --project; empty: gcloud's configured project
TPU_ZONE=${TPU_ZONE:-us-west4-a}                        # --zone; one that has the accelerator type
TPU_NAME=${TPU_NAME:-r1jax}                             # --name of the TPU VM (and of its queued resource)
TPU_ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE:-v5litepod-8}  # --accelerator-type; v5e-N means v5litepod-N
TPU_RUNTIME_VERSION=${TPU_RUNTIME_VERSION:-}            # --runtime-version; empty: Google's choice for the generation
TPU_SPOT=${TPU_SPOT:-0}                                 # --spot: cheaper, preemptible at any time
TPU_QUEUED=${TPU_QUEUED:-0}                             # --queued: a queued resource that waits for capacity
TPU_CREATE_FLAGS=${TPU_CREATE_FLAGS:-}                  # more create flags, e.g. "--reserved"
TPU_GCS_BUCKET=${TPU_GCS_BUCKET:-}                      # --gcs-bucket: mounted on every worker at TPU_GCS_MOUNT
TPU_GCS_MOUNT=${TPU_GCS_MOUNT:-/mnt/gcs}
# No metadata caching: the hosts of a pod slice read files that process 0 has just written.
TPU_GCSFUSE_FLAGS=${TPU_GCSFUSE_FLAGS:---implicit-dirs --metadata-cache-ttl-secs=0 --metadata-cache-negative-ttl-secs=0}
R1JAX_PYTHON=${R1JAX_PYTHON:-3.11}                      # --python for the workers' virtualenv
R1JAX_LOG=${R1JAX_LOG:-}                                # --log, under each worker's home; r1jax_logs/<name>.log
DRY_RUN=${DRY_RUN:-0}                                   # --dry-run: print the commands instead of running them
DRY_RUN_STATES=${DRY_RUN_STATES:-}                      # --dry-run-states: the states a dry run pretends to read

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COMMON_VALUE_FLAGS="--project:TPU_PROJECT --zone:TPU_ZONE --name:TPU_NAME
  --accelerator-type:TPU_ACCELERATOR_TYPE --runtime-version:TPU_RUNTIME_VERSION --dry-run-states:DRY_RUN_STATES"
COMMON_SWITCHES="--dry-run:DRY_RUN"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
usage_error() { echo "$(basename "$0"): $*" >&2; echo "Run $(basename "$0") --help for the flags." >&2; exit 2; }

# The arguments as one shell-safe line (what `shlex.split` reads back): plain words stay as they
# are, anything else goes in single quotes.
quote() {
  local arg line=""
  for arg in "$@"; do
    case $arg in
      "" | *[!A-Za-z0-9_./:=,@%+-]*) arg="'${arg//\'/\'\\\'\'}'" ;;
    esac
    line="${line:+$line }$arg"
  done
  printf '%s' "$line"
}

# Runs a command, or with --dry-run prints it as `+ command`.
run() {
  if ((DRY_RUN)); then echo "+ $(quote "$@")"; else "$@"; fi
}

# parse_flags VALUE_SPECS SWITCH_SPECS ARGS...: each spec is `--flag:VARIABLE`; `--flag value` and
# `--flag=value` set VARIABLE, a switch sets it to 1. The arguments after `--` land in COMMAND.
# Every script calls `usage` for --help.
parse_flags() {
  local value_specs="$1 $COMMON_VALUE_FLAGS" switch_specs="$2 $COMMON_SWITCHES" spec matched
  shift 2
  COMMAND=()
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --) shift; COMMAND=("$@"); break ;;
    esac
    matched=0
    for spec in $switch_specs; do
      if [[ $1 == "${spec%%:*}" ]]; then printf -v "${spec#*:}" 1; matched=1; fi
    done
    for spec in $value_specs; do
      if [[ $1 == "${spec%%:*}="* ]]; then
        printf -v "${spec#*:}" '%s' "${1#*=}"; matched=1
      elif [[ $1 == "${spec%%:*}" ]]; then
        (($# >= 2)) || usage_error "$1 needs a value"
        printf -v "${spec#*:}" '%s' "$2"; matched=1; shift
      fi
    done
    ((matched)) || usage_error "unknown argument: $1"
    shift
  done
  resolve_settings
}

resolve_settings() {
  case $TPU_ACCELERATOR_TYPE in
    v5e-*) TPU_ACCELERATOR_TYPE=v5litepod-${TPU_ACCELERATOR_TYPE#v5e-} ;;  # r1jax's machine name -> gcloud's
  esac
  if [[ -z $TPU_RUNTIME_VERSION ]]; then
    # https://cloud.google.com/tpu/docs/runtimes: the base images for JAX and PyTorch per generation.
    case $TPU_ACCELERATOR_TYPE in
      v6e-*) TPU_RUNTIME_VERSION=v2-alpha-tpuv6e ;;
      v5p-*) TPU_RUNTIME_VERSION=v2-alpha-tpuv5 ;;
      v5litepod-*) TPU_RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
      *) TPU_RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    esac
  fi
  R1JAX_LOG=${R1JAX_LOG:-r1jax_logs/$TPU_NAME.log}
  LOCATION=(--zone="$TPU_ZONE")
  if [[ -n $TPU_PROJECT ]]; then LOCATION+=(--project="$TPU_PROJECT"); fi
  # Keepalives end an SSH session within minutes when its worker is preempted, instead of at the
  # TCP timeout, so that the resume loop notices.
  SSH_FLAGS=(--ssh-flag=-oServerAliveInterval=30 --ssh-flag=-oServerAliveCountMax=6)
}

ready_state() { if ((TPU_QUEUED)); then echo ACTIVE; else echo READY; fi; }

create_tpu() {
  local extra=()
  if ((TPU_SPOT)); then extra+=(--spot); fi
  # Word splitting wanted: TPU_CREATE_FLAGS is a list of flags.
  # shellcheck disable=SC2206
  extra+=($TPU_CREATE_FLAGS)
  if ((TPU_QUEUED)); then
    run gcloud compute tpus queued-resources create "$TPU_NAME" "${LOCATION[@]}" --node-id="$TPU_NAME" \
      --accelerator-type="$TPU_ACCELERATOR_TYPE" --runtime-version="$TPU_RUNTIME_VERSION" ${extra[@]+"${extra[@]}"}
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" \
      --accelerator-type="$TPU_ACCELERATOR_TYPE" --version="$TPU_RUNTIME_VERSION" ${extra[@]+"${extra[@]}"}
  fi
}

delete_tpu() {
  if ((TPU_QUEUED)); then  # --force deletes the queued resource's TPU VM with it
    run gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet
  fi
}

# Sets STATE: the TPU VM's state (READY, CREATING, PREEMPTED, ...) or, with --queued, the queued
# resource's (ACTIVE, WAITING_FOR_RESOURCES, SUSPENDED, ...); NOT_FOUND when there is none; UNKNOWN
# when gcloud failed otherwise (the network, say). A dry run takes the next word of
# DRY_RUN_STATES, and the ready state when none is left.
read_state() {
  local describe errors
  if ((TPU_QUEUED)); then
    describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOCATION[@]}" --format='value(state.state)')
  else
    describe=(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOCATION[@]}" --format='value(state)')
  fi
  if ((DRY_RUN)); then
    run "${describe[@]}"
    read -r STATE DRY_RUN_STATES <<<"${DRY_RUN_STATES:-}"
    STATE=${STATE:-$(ready_state)}
    return
  fi
  errors=$(mktemp)
  if STATE=$("${describe[@]}" 2>"$errors"); then
    STATE=${STATE:-UNKNOWN}
  elif grep -q NOT_FOUND "$errors"; then
    STATE=NOT_FOUND
  else
    log "could not read the state of $TPU_NAME: $(cat "$errors")"
    STATE=UNKNOWN
  fi
  rm -f "$errors"
}

# Copies this checkout to every worker and installs it with jax[tpu] in a Python $R1JAX_PYTHON
# virtualenv (the TPU images ship Python 3.10; r1jax needs 3.11+, which uv fetches). The checkout
# goes to ~/r1jax, unpacked over the last one so that a relative workdir there survives.
install_r1jax() {
  local tarball="${TMPDIR:-/tmp}/r1jax-$TPU_NAME.tar.gz" remote
  # The files `git status` knows (tracked, or untracked and not ignored): no workdirs, venvs or caches.
  run sh -c 'git -C "$1" ls-files -z --cached --others --exclude-standard | tar -czf "$2" -C "$1" --null -T -' \
    pack "$REPO" "$tarball"
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:/tmp/r1jax.tar.gz" "${LOCATION[@]}" --worker=all
  remote="set -euo pipefail; mkdir -p ~/r1jax; tar -xzf /tmp/r1jax.tar.gz -C ~/r1jax"
  remote+="; python3 -m pip install --user --quiet --upgrade uv"
  remote+="; ~/.local/bin/uv venv --quiet --allow-existing --python $R1JAX_PYTHON ~/r1jax-venv"
  remote+="; ~/.local/bin/uv pip install --quiet --python ~/r1jax-venv/bin/python 'jax[tpu]' -e ~/r1jax"
  remote+="; ~/r1jax-venv/bin/python -c 'import jax, r1jax; print(\"r1jax installed with jax\", jax.__version__)'"
  if [[ -n $TPU_GCS_BUCKET ]]; then
    # Cloud Storage FUSE from Google's apt repository, then the bucket at TPU_GCS_MOUNT.
    remote+="; if ! command -v gcsfuse >/dev/null; then"
    remote+=" echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt"
    remote+=" gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null"
    remote+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg"
    remote+=" | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null"
    remote+=" && sudo apt-get -o DPkg::Lock::Timeout=600 update -qq"
    remote+=" && sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq gcsfuse; fi"
    remote+="; sudo mkdir -p $TPU_GCS_MOUNT; sudo chown \"\$USER\" $TPU_GCS_MOUNT"
    remote+="; mountpoint -q $TPU_GCS_MOUNT || gcsfuse $TPU_GCSFUSE_FLAGS $TPU_GCS_BUCKET $TPU_GCS_MOUNT"
  fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all "${SSH_FLAGS[@]}" --command="$remote"
}

# Runs COMMAND... in ~/r1jax on every worker at once (a multi-host JAX job needs every process),
# appending its output to ~/$R1JAX_LOG there. Returns when all have exited: 0 if all succeeded.
run_on_workers() {
  local remote
  local log="\$HOME/$R1JAX_LOG"
  remote="set -eo pipefail; source ~/r1jax-venv/bin/activate; mkdir -p \"\$(dirname \"$log\")\"; cd ~/r1jax"
  remote+="; { $(quote "$@"); } 2>&1 | tee -a \"$log\""
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all "${SSH_FLAGS[@]}" --command="$remote"
}
