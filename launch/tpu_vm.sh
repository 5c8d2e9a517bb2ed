#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice: every worker (host) of the slice runs the same
# command, and `--distributed` makes fer_jax call jax.distributed.initialize() without
# arguments, which finds the other workers from the TPU metadata. The training mesh then
# spans every TPU chip of the slice.
#
#   export TPU_NAME=fer-v4-32 ZONE=us-central2-b
#   launch/tpu_vm.sh create [GCLOUD_FLAG ...]   # e.g. --spot; ACCELERATOR_TYPE, RUNTIME_VERSION
#   launch/tpu_vm.sh setup                      # copy this repository to every worker, install
#   launch/tpu_vm.sh run CONFIG WORKDIR [FLAG ...]
#   launch/tpu_vm.sh delete
#
# e.g. launch/tpu_vm.sh run configs/timesformer_cremad.py /mnt/shared/runs/cremad \
#          --config.train.batch_size=256
#
# setup copies the files of this checkout (tracked and untracked ones that git does not
# ignore) to ~/fer_jax on every worker and runs `pip install -e . jax[tpu]` there; run it
# again after changing the code. `run` runs
#   cd fer_jax && python3 -m fer_jax.main --config=CONFIG --workdir=WORKDIR --distributed FLAG...
# on all workers at once, their output interleaved on this console; it lasts as long as the
# ssh sessions, so start long runs from a terminal that stays open (tmux, screen).
#
# WORKDIR is a local path on each worker, and it must be the same directory on all of them
# (every worker writes its part of the checkpoints): a shared file system mounted at the same
# path, e.g. Filestore (NFS) or a Cloud Storage bucket mounted with gcsfuse. fer_jax does not
# open gs:// URLs itself, so `run` refuses them. The dataset's data_dir must exist on every
# worker too (the synthetic benchmark is generated in place).
#
# Preemption (spot / preemptible slices): fer_jax saves a checkpoint on SIGTERM; once the
# slice is back (recreate it, run setup), the same `run` command resumes from WORKDIR.
set -euo pipefail

ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-32}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
PYTHON=${PYTHON:-python3}

usage() {
    cat >&2 <<'EOF'
usage: TPU_NAME=NAME ZONE=ZONE launch/tpu_vm.sh COMMAND [ARG ...]

  create [GCLOUD_FLAG ...]         create the TPU VM slice (ACCELERATOR_TYPE, default v4-32;
                                   RUNTIME_VERSION, default tpu-ubuntu2204-base)
  setup                            copy this repository to every worker and install it
  run CONFIG WORKDIR [FLAG ...]    train on all workers: python3 -m fer_jax.main
                                   --config=CONFIG --workdir=WORKDIR --distributed FLAG ...
                                   (WORKDIR: a directory shared by all workers)
  delete                           delete the TPU VM slice

Environment: TPU_NAME and ZONE (required), PROJECT (optional: gcloud's default otherwise),
PYTHON (on the workers, default python3).
EOF
    exit 2
}

[ $# -ge 1 ] || usage
[ -n "${TPU_NAME:-}" ] && [ -n "${ZONE:-}" ] || { echo "tpu_vm.sh: set TPU_NAME and ZONE" >&2; usage; }
GCLOUD_FLAGS=(--zone="$ZONE")
if [ -n "${PROJECT:-}" ]; then GCLOUD_FLAGS+=(--project="$PROJECT"); fi

on_all_workers() {  # COMMAND: run a shell command on every worker of the slice
    gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --worker=all --command="$1"
}

create() {
    gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_FLAGS[@]}" \
        --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "$@"
}

setup() {
    local root tmp archive
    root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
    tmp=$(mktemp -d)
    archive=$tmp/fer_jax.tar.gz
    (cd "$root" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -czf "$archive")
    gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME":fer_jax.tar.gz \
        "${GCLOUD_FLAGS[@]}" --worker=all
    on_all_workers "rm -rf fer_jax && mkdir fer_jax && tar -xzf fer_jax.tar.gz -C fer_jax \
        && cd fer_jax && $PYTHON -m pip install -q -e . 'jax[tpu]'"
    rm -rf "$tmp"
}

run() {
    [ $# -ge 2 ] || usage
    local config=$1 workdir=$2
    shift 2
    case "$workdir" in
        gs://*) echo "tpu_vm.sh: fer_jax writes WORKDIR through the file system: give a" \
                     "directory shared by all workers (e.g. a bucket mounted with gcsfuse)," \
                     "not $workdir" >&2
                exit 2 ;;
    esac
    local command
    command=$(printf '%q ' "$PYTHON" -m fer_jax.main --config="$config" --workdir="$workdir" \
        --distributed "$@")
    on_all_workers "cd fer_jax && $command"
}

delete() {
    gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --quiet
}

case "$1" in
    create|setup|run|delete) step=$1; shift; "$step" "$@" ;;
    *) usage ;;
esac
