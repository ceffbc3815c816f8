"""The check_tokenizer CLI: exit codes and its last line."""

from __future__ import annotations

import json

import pytest

from reczero_jax.tools.check_tokenizer import main
from tests.rewards.scorer import ROWS, TOKENS

SHAPE = ["--max_tokens", str(TOKENS), "--batch_size", str(ROWS)]  # the tests' compiled shape
ANSWER = (
    "<analyze user>u</analyze user>\n<analyze item>i</analyze item>\n<match>m</match>\n"
    "<rate>{}</rate><|im_end|>"
)


def _last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_builtin_corpus_passes(tiny_dir, capsys):
    assert main(["--tokenizer", str(tiny_dir), *SHAPE]) == 0
    last = _last_line(capsys)
    assert last.startswith("disagreements: 0 (") and last.endswith(" cases)")


def test_wrong_expectation_fails(tiny_dir, tmp_path, capsys):
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"response": ANSWER.format("4.5"), "target": 4, "expect_valid": True, "expect_rating": 4.5},
        {"response": ANSWER.format("4.5"), "target": 4, "expect_rating": 3.0},
        {"response": ANSWER.format("6"), "target": 4, "expect_valid": False, "expect_reward": -0.5},
    ]
    cases.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert main(["--tokenizer", str(tiny_dir), "--cases", str(cases), *SHAPE]) == 1
    out = capsys.readouterr().out
    assert "case 1 " in out and "expect_rating=3.0" in out and "case 0 " not in out
    assert out.strip().splitlines()[-1] == "disagreements: 1 (3 cases)"


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot read cases file"),
        ("{not json\n", "line 1: invalid JSON"),
        ('{"response": "x"}\n', "'target' must be a finite number"),
        ('{"response": "x", "target": 3, "expect_valid": "yes"}\n', "'expect_valid'"),
        ("\n", "holds no cases"),
    ],
)
def test_bad_cases_file(tiny_dir, tmp_path, capsys, content, message):
    cases = tmp_path / "cases.jsonl"
    if content is not None:
        cases.write_text(content, encoding="utf-8")
    assert main(["--tokenizer", str(tiny_dir), "--cases", str(cases), *SHAPE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_missing_tokenizer_folder(tmp_path, capsys):
    assert main(["--tokenizer", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err and len(err.splitlines()) == 1
