#!/usr/bin/env bash
# Delete the TPU VM (or, with --queued, its queued resource and the VM with it).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="Delete the TPU VM --name without a prompt (gcloud compute tpus tpu-vm delete --quiet),
or with --queued the queued resource --name together with its VM (queued-resources delete
--force --quiet). The run's files on GCS are kept."
tpu_flags
switch queued "delete the queued resource (and its VM) instead of the VM"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ $QUEUED == 1 ]]; then
  run gcloud compute tpus queued-resources delete "$NAME" "--zone=$ZONE" \
    ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" "--zone=$ZONE" \
    ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} --quiet
fi
