#!/usr/bin/env bash
# Start a RecZero run on every worker at once, in the background (nohup), one process per host.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="Start python -m reczero_jax.main --config CONFIG --config.workdir=WORKDIR
--config.distributed.enabled=true [OVERRIDE...] on every worker at once (--worker=all), in the
background with nohup; each worker appends its output to --log. JAX_COMPILATION_CACHE_DIR is
exported so compiled programs are cached (a relaunch after preemption skips most compiling).
Relaunching with the same command resumes from the last checkpoint in WORKDIR."
ACCEPTS_EXTRA=1
EXTRA_USAGE="--config.KEY=VALUE ..."
tpu_flags
required_flag config "config file, relative to --remote-dir (e.g. configs/reczero_qwen2_5_7b.py)"
required_flag workdir "run directory every host can reach, e.g. gs://BUCKET/runs/NAME"
flag cache-dir "" "JAX persistent compilation cache" "WORKDIR/jax_cache"
flag remote-dir "$DEFAULT_REMOTE_DIR" "project folder on the workers (relative to home)"
flag log "$DEFAULT_LOG" "log file on each worker (relative to --remote-dir)"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ -z $CACHE_DIR ]]; then
  CACHE_DIR="${WORKDIR%/}/jax_cache"
fi

main_cmd=(python -m reczero_jax.main --config "$CONFIG" "--config.workdir=$WORKDIR"
  --config.distributed.enabled=true ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"})
remote="cd $(quote "$REMOTE_DIR")"
remote+=" && mkdir -p $(quote "$(dirname "$LOG")")"
remote+=" && . .venv/bin/activate"
remote+=" && export $(quote "JAX_COMPILATION_CACHE_DIR=$CACHE_DIR") PYTHONUNBUFFERED=1"
remote+=" && ( nohup $(join_quoted "${main_cmd[@]}") >> $(quote "$LOG") 2>&1 < /dev/null & )"
log_shown=$LOG
if [[ $LOG != /* ]]; then
  log_shown="$REMOTE_DIR/$LOG"
fi
remote+=" && echo \"\$(hostname)\": started, log: $(quote "$log_shown")"
tpu_ssh all "$remote"
