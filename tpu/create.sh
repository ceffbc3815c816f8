#!/usr/bin/env bash
# Create a TPU VM, or with --queued a queued resource that provisions one when capacity frees up.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="Create a TPU VM (gcloud compute tpus tpu-vm create), or with --queued a queued
resource (gcloud compute tpus queued-resources create) whose node is the VM --name."
tpu_flags
flag accelerator-type "$DEFAULT_ACCELERATOR_TYPE" "TPU type: v4-8 (one host), v4-32, v5litepod-16, ..."
flag version "" "TPU runtime (software) version" \
  "$DEFAULT_VERSION; v2-alpha-tpuv5-lite for v5litepod-*, v2-alpha-tpuv5 for v5p-*, v2-alpha-tpuv6e for v6e-*"
switch spot "request Spot capacity (cheaper, can be preempted)"
switch queued "create a queued resource (id = --name) instead of the VM directly"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ -z $VERSION ]]; then
  # The runtime Google lists for JAX on each TPU generation.
  case $ACCELERATOR_TYPE in
    v5litepod-* | v5e-*) VERSION="v2-alpha-tpuv5-lite" ;;
    v5p-*) VERSION="v2-alpha-tpuv5" ;;
    v6e-*) VERSION="v2-alpha-tpuv6e" ;;
    *) VERSION=$DEFAULT_VERSION ;;
  esac
fi

if [[ $QUEUED == 1 ]]; then
  cmd=(gcloud compute tpus queued-resources create "$NAME" "--node-id=$NAME" "--zone=$ZONE"
    ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"}
    "--accelerator-type=$ACCELERATOR_TYPE" "--runtime-version=$VERSION")
else
  cmd=(gcloud compute tpus tpu-vm create "$NAME" "--zone=$ZONE"
    ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"}
    "--accelerator-type=$ACCELERATOR_TYPE" "--version=$VERSION")
fi
if [[ $SPOT == 1 ]]; then
  cmd+=(--spot)
fi
run "${cmd[@]}"
