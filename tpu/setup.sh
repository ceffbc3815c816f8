#!/usr/bin/env bash
# Put the project on every worker of the TPU VM and install it (venv, pinned TPU install).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE_TEXT="On every worker of the TPU VM: get the project (git clone --repo, or copy the local
checkout --src with gcloud compute tpus tpu-vm scp --recurse), create a venv, then the pinned
install of the project's README: pip install -r requirements.txt -r requirements-gcs.txt, pip install
\"$JAX_TPU_REQUIREMENT\", pip install --no-deps -e . Safe to run again (updates the code)."
tpu_flags
flag repo "" "git URL to clone on the workers instead of copying --src"
flag src "$PROJECT_ROOT" "local checkout to copy (its pyproject.toml, requirements*.txt, reczero_jax/, configs/)"
flag remote-dir "$DEFAULT_REMOTE_DIR" "project folder on the workers (relative to home)"
flag python "$DEFAULT_PYTHON" "Python (>= 3.11) that creates the venv"
switch no-apt "do not apt-get install PYTHON and PYTHON-venv (the image already has them)"
dry_run_switch
parse_flags "$@"
finish_flags

if [[ -z $REMOTE_DIR || $REMOTE_DIR == / || $REMOTE_DIR == -* ]]; then
  die_usage "--remote-dir must name a folder, got $(quote "$REMOTE_DIR")"
fi

# What --src copies: enough to install and run (not .venv/, .git/ or tests/).
SRC_ITEMS=(pyproject.toml requirements.txt requirements-gcs.txt reczero_jax configs)

dir=$(quote "$REMOTE_DIR")
steps=()
if [[ -n $REPO ]]; then
  steps+=("if [ -d $(quote "$REMOTE_DIR/.git") ]; then $(join_quoted git -C "$REMOTE_DIR" pull --ff-only); else $(join_quoted git clone "$REPO" "$REMOTE_DIR"); fi")
else
  sources=()
  for item in "${SRC_ITEMS[@]}"; do
    if [[ ! -e $SRC/$item ]]; then
      die_usage "--src $(quote "$SRC") has no $item (is it a reczero-jax checkout?)"
    fi
    sources+=("${SRC%/}/$item")
  done
  # A fresh copy of the package folders (files deleted locally go away); the venv stays.
  tpu_ssh all "mkdir -p $dir && rm -rf $dir/reczero_jax $dir/configs"
  run gcloud compute tpus tpu-vm scp --recurse "${sources[@]}" "$NAME:$REMOTE_DIR" \
    "--zone=$ZONE" ${PROJECT_ARGS[@]+"${PROJECT_ARGS[@]}"} --worker=all
fi
steps+=("cd $dir")
if [[ $NO_APT != 1 ]]; then
  # A fresh VM's unattended upgrades can hold the apt lock for a few minutes: wait for it.
  steps+=(
    "sudo apt-get -o DPkg::Lock::Timeout=600 update -q"
    "$(join_quoted sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y -q "$PYTHON" "$PYTHON-venv")"
  )
fi
steps+=(
  "$(join_quoted "$PYTHON" -m venv .venv)"
  ". .venv/bin/activate"
  "python -m pip install -q --upgrade pip"
  "pip install -r requirements.txt -r requirements-gcs.txt"
  "pip install \"$JAX_TPU_REQUIREMENT\""
  "pip install --no-deps -e ."
  "python -c \"import jax; print(jax.__version__)\""
)
remote=""
for step in "${steps[@]}"; do
  remote+="${remote:+ && }$step"
done
tpu_ssh all "$remote"
