#!/usr/bin/env bash
# Copy a run directory (metrics, results, checkpoints) from GCS to a local folder.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="Copy the run directory --workdir (gs://BUCKET/runs/NAME) into the local folder
--dest (as DEST/NAME) with gcloud storage cp -r; with --no-checkpoints, gcloud storage
rsync without the checkpoints/ folder (a 7B run's checkpoints are large)."
required_flag workdir "the run directory on GCS, gs://BUCKET/runs/NAME"
flag dest runs "local folder to copy into"
switch no-checkpoints "skip WORKDIR/checkpoints/"
flag project "" "GCP project" "gcloud's core/project"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ $WORKDIR != gs://?* ]]; then
  die_usage "--workdir must be a gs:// path, got $(quote "$WORKDIR")"
fi
source_dir=${WORKDIR%/}
run_name=${source_dir##*/}
if [[ -z $run_name || $source_dir == gs:/ ]]; then
  die_usage "--workdir must name a folder, got $(quote "$WORKDIR")"
fi

run mkdir -p "$DEST"
if [[ $NO_CHECKPOINTS == 1 ]]; then
  run gcloud storage rsync --recursive "--exclude=^checkpoints/" \
    ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} "$source_dir" "${DEST%/}/$run_name"
else
  run gcloud storage cp -r ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} "$source_dir" "${DEST%/}/"
fi
