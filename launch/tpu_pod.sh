#!/usr/bin/env bash
# Runs one command on every worker of a Cloud TPU VM slice (one process per worker, all the chips
# of its host), from a copy of this repository in ~/vl-jax on each worker.
#
#   launch/tpu_pod.sh NAME ZONE --setup
#       copies this checkout to every worker and installs it there (jax[tpu])
#   launch/tpu_pod.sh NAME ZONE --mount BUCKET
#       mounts gs://BUCKET read-only at /tmp/gcs/BUCKET on every worker with gcsfuse, for the data
#       dir: ArrayRecord shards are read from a local path (docs/SCALING.md, "Storage")
#   launch/tpu_pod.sh NAME ZONE -- python main.py --config configs/X.py --workdir gs://BUCKET/run
#       runs the command on all workers at once; each joins the run through
#       jax.distributed.initialize(), which finds the slice's workers by itself (--distributed=on)
#
# The workdir must be storage every worker sees (a gs:// bucket): orbax writes each checkpoint
# from all workers together. Set PROJECT to pass --project to gcloud.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 NAME ZONE --setup | $0 NAME ZONE -- COMMAND..." >&2
  exit 2
fi
name=$1 zone=$2
shift 2
gcloud_args=(--zone "$zone" --worker=all ${PROJECT:+--project "$PROJECT"})
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ $1 == --setup ]]; then
  tar czf /tmp/vl-jax.tgz -C "$repo" --exclude=.venv --exclude=.git .
  gcloud compute tpus tpu-vm scp /tmp/vl-jax.tgz "$name":/tmp/vl-jax.tgz "${gcloud_args[@]}"
  gcloud compute tpus tpu-vm ssh "$name" "${gcloud_args[@]}" --command "
    set -e; mkdir -p ~/vl-jax && tar xzf /tmp/vl-jax.tgz -C ~/vl-jax && cd ~/vl-jax &&
    python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . 'jax[tpu]'"
  exit 0
fi
if [[ $1 == --mount ]]; then
  bucket=${2:?usage: $0 NAME ZONE --mount BUCKET}
  gcloud compute tpus tpu-vm ssh "$name" "${gcloud_args[@]}" --command "
    set -e; command -v gcsfuse >/dev/null ||
      { echo \"gcsfuse is not installed on \$(hostname) (docs/SCALING.md)\" >&2; exit 1; }
    mkdir -p /tmp/gcs/$bucket && gcsfuse --implicit-dirs -o ro $bucket /tmp/gcs/$bucket"
  exit 0
fi
if [[ $1 != -- ]]; then
  echo "$0: put the command after --" >&2
  exit 2
fi
shift
printf -v command '%q ' "$@"
gcloud compute tpus tpu-vm ssh "$name" "${gcloud_args[@]}" \
  --command "cd ~/vl-jax && . .venv/bin/activate && ${command} --distributed=on"
