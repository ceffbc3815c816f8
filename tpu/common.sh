#!/usr/bin/env bash
# Shared by the tpu/*.sh scripts (sourced, never run): defaults, flag parsing, quoting and
# `run`, which prints a command ("+ gcloud ...") under --dry-run and runs it otherwise.
#
# Written for bash >= 3.2 (macOS): no associative arrays, no ${x^^}, empty arrays are
# expanded as ${a[@]+"${a[@]}"}.
set -euo pipefail

# --- Defaults (shown by every script's --help), used by the scripts that source this file.
# shellcheck disable=SC2034
{
  DEFAULT_NAME="reczero-tpu"
  DEFAULT_ZONE="us-central2-b"
  DEFAULT_ACCELERATOR_TYPE="v4-8"
  DEFAULT_VERSION="tpu-ubuntu2204-base"
  DEFAULT_REMOTE_DIR="reczero-jax" # on each worker, relative to the login user's home
  DEFAULT_LOG="logs/train.log"     # on each worker, relative to the remote dir
  DEFAULT_PYTHON="python3.11"      # pyproject.toml: requires-python >= 3.11
  # The TPU install of the project's README ("Installation"): requirements.txt, then this.
  JAX_TPU_REQUIREMENT="jax[tpu]==0.10.2"
  # The checkout these scripts belong to (the default --src of setup.sh).
  PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

SCRIPT_NAME=$(basename "$0")

# --- Errors.

# die_usage MESSAGE: a one-line error for a bad command line; exit status 2.
die_usage() {
  echo "$SCRIPT_NAME: $* (see $SCRIPT_NAME --help)" >&2
  exit 2
}

# --- Quoting.

# quote WORD: WORD as one shell word, quoted only when needed ('...' with ' as '\'').
# A --flag=VALUE word keeps its "--flag=" bare: --command='cd dir && ...'.
quote() {
  local word=$1 q="'"
  if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$word"
  elif [[ $word =~ ^(--[A-Za-z0-9][A-Za-z0-9_.-]*=)(.*)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    quote "${BASH_REMATCH[2]}"
  else
    printf '%s' "'${word//$q/$q\\$q$q}'"
  fi
}

# join_quoted WORD...: the words quoted and joined by spaces (a command line).
join_quoted() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# --- Running.

DRY_RUN=0

# run CMD [ARG...]: under --dry-run print "+ CMD ARG..." (quoted, one line) and run
# nothing; otherwise print the same line on stderr and run the command.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ %s\n' "$(join_quoted "$@")"
  else
    printf '+ %s\n' "$(join_quoted "$@")" >&2
    "$@"
  fi
}

# --- Flags.
#
# A script declares its flags, then calls parse_flags "$@":
#   flag NAME DEFAULT HELP [SHOWN_DEFAULT]   --NAME VALUE or --NAME=VALUE
#   required_flag NAME HELP                  same, must be given
#   switch NAME HELP                         --NAME sets it to 1 (default 0)
# The value lands in the variable NAME upper-cased with '-' as '_' (--cache-dir: CACHE_DIR).
# With ACCEPTS_EXTRA=1 the words after `--` land in EXTRA_ARGS; otherwise `--` is an error.

_FLAG_NAMES=()
_FLAG_KINDS=() # value | required | switch
_FLAG_HELPS=()
_FLAG_SHOWN=() # the default as --help shows it
ACCEPTS_EXTRA=0
EXTRA_ARGS=()
USAGE_TEXT=""  # what the script does, for --help
EXTRA_USAGE="" # what the words after `--` are, for --help

flag_var() {
  printf '%s' "$1" | tr 'a-z-' 'A-Z_'
}

_add_flag() {
  _FLAG_NAMES+=("$1")
  _FLAG_KINDS+=("$2")
  _FLAG_HELPS+=("$3")
  _FLAG_SHOWN+=("$4")
}

flag() {
  _add_flag "$1" value "$3" "${4-$2}"
  printf -v "$(flag_var "$1")" '%s' "$2"
}

required_flag() {
  _add_flag "$1" required "$2" ""
  printf -v "$(flag_var "$1")" '%s' ""
}

switch() {
  _add_flag "$1" switch "$2" ""
  printf -v "$(flag_var "$1")" '%s' 0
}

# The flags most scripts share.
tpu_flags() {
  flag name "$DEFAULT_NAME" "TPU VM name (and queued resource id)"
  flag zone "$DEFAULT_ZONE" "zone of the TPU VM"
  flag project "" "GCP project" "gcloud's core/project"
}

dry_run_switch() {
  switch dry-run "print the gcloud commands (prefixed '+ '), run nothing"
}

# usage: the --help text, built from the flag declarations.
usage() {
  local i name left right width=10 lefts=() rights=()
  for ((i = 0; i < ${#_FLAG_NAMES[@]}; i++)); do
    name=${_FLAG_NAMES[i]}
    left="--$name"
    right=${_FLAG_HELPS[i]}
    case ${_FLAG_KINDS[i]} in
      value)
        left+=" $(flag_var "$name")"
        right+=" (default: ${_FLAG_SHOWN[i]:-none})"
        ;;
      required)
        left+=" $(flag_var "$name")"
        right+=" (required)"
        ;;
      switch)
        right+=" (default: off)"
        ;;
    esac
    lefts+=("$left")
    rights+=("$right")
    if ((${#left} > width)); then
      width=${#left}
    fi
  done
  lefts+=("-h, --help")
  rights+=("print this help and exit")

  printf 'Usage: %s [flags]' "$SCRIPT_NAME"
  if [[ $ACCEPTS_EXTRA == 1 ]]; then
    printf ' [-- %s]' "$EXTRA_USAGE"
  fi
  printf '\n\n%s\n\nFlags:\n' "$USAGE_TEXT"
  for ((i = 0; i < ${#lefts[@]}; i++)); do
    printf '  %-*s  %s\n' "$width" "${lefts[i]}" "${rights[i]}"
  done
}

_flag_index() {
  local i
  for ((i = 0; i < ${#_FLAG_NAMES[@]}; i++)); do
    if [[ ${_FLAG_NAMES[i]} == "$1" ]]; then
      printf '%s' "$i"
      return 0
    fi
  done
  return 1
}

# parse_flags "$@": sets the flag variables and EXTRA_ARGS; --help prints usage, exit 0;
# any mistake (unknown flag, missing value, missing required flag, stray word): exit 2.
parse_flags() {
  local arg name value has_value index kind
  while (($# > 0)); do
    arg=$1
    has_value=0
    case $arg in
      -h | --help)
        usage
        exit 0
        ;;
      --)
        shift
        if [[ $ACCEPTS_EXTRA != 1 ]]; then
          die_usage "takes no arguments after --"
        fi
        # shellcheck disable=SC2034  # read by the script that sourced this file
        EXTRA_ARGS=("$@")
        break
        ;;
      --*=*)
        name=${arg%%=*}
        name=${name#--}
        value=${arg#*=}
        has_value=1
        ;;
      --*)
        name=${arg#--}
        ;;
      *)
        die_usage "unexpected argument: $(quote "$arg")"
        ;;
    esac
    if ! index=$(_flag_index "$name"); then
      die_usage "unknown flag: $(quote "--$name")"
    fi
    kind=${_FLAG_KINDS[index]}
    if [[ $kind == switch ]]; then
      if [[ $has_value == 1 ]]; then
        die_usage "flag --$name takes no value"
      fi
      value=1
    elif [[ $has_value == 0 ]]; then
      if (($# < 2)) || [[ $2 == --* ]]; then
        die_usage "flag --$name needs a value"
      fi
      value=$2
      shift
    fi
    printf -v "$(flag_var "$name")" '%s' "$value"
    shift
  done
  for ((index = 0; index < ${#_FLAG_NAMES[@]}; index++)); do
    name=${_FLAG_NAMES[index]}
    if [[ ${_FLAG_KINDS[index]} == required ]]; then
      value=$(flag_var "$name")
      if [[ -z ${!value} ]]; then
        die_usage "missing required flag --$name"
      fi
    fi
  done
}

# --- gcloud pieces.

# ("--project=P") when --project was given, else empty; set by finish_flags.
PROJECT_ARGS=()

# finish_flags: derived values every script needs after parse_flags.
finish_flags() {
  PROJECT_ARGS=()
  if [[ -n ${PROJECT:-} ]]; then
    PROJECT_ARGS=("--project=$PROJECT")
  fi
}

# tpu_ssh WORKER COMMAND: `gcloud compute tpus tpu-vm ssh` running COMMAND (one string,
# run by the login shell) on WORKER ("all" or a number) of the VM --name in --zone.
# shellcheck disable=SC2153  # NAME and ZONE are set by tpu_flags / parse_flags
tpu_ssh() {
  run gcloud compute tpus tpu-vm ssh "$NAME" "--zone=$ZONE" ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} \
    "--worker=$1" "--command=$2"
}
