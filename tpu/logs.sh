#!/usr/bin/env bash
# Stream the training log of one worker (tail -f over ssh; Ctrl-C stops the stream, not the run).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="Stream the log that launch.sh writes on one worker (tail -f over
gcloud compute tpus tpu-vm ssh). Ctrl-C ends the stream; the run goes on."
tpu_flags
flag worker 0 "worker (host) number; worker 0 is the one that logs metrics"
flag tail-lines 100 "lines of history to show before streaming"
flag remote-dir "$DEFAULT_REMOTE_DIR" "project folder on the workers (relative to home)"
flag log "$DEFAULT_LOG" "log file (relative to --remote-dir)"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ ! $WORKER =~ ^[0-9]+$ ]]; then
  die_usage "--worker must be a worker number (0, 1, ...), got $(quote "$WORKER")"
fi
if [[ ! $TAIL_LINES =~ ^[0-9]+$ ]]; then
  die_usage "--tail-lines must be a number, got $(quote "$TAIL_LINES")"
fi

tpu_ssh "$WORKER" "cd $(quote "$REMOTE_DIR") && $(join_quoted tail -n "$TAIL_LINES" -f "$LOG")"
