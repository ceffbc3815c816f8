"""benchmarks/sampler_memory.py on the tiny Qwen2: one row per decode loop and number of
cache phases, each compiled (nothing allocated), and the table made from the rows."""

from __future__ import annotations

import json

from tests.benchmarks.scripts import load_script


def test_rows_per_decode_loop_and_the_table(capsys):
    bench = load_script("sampler_memory")
    flags = ["--models", "tiny", "--prompts", "2", "--samples", "2"]
    result = bench.main([*flags, "--prompt_len", "32", "--new_tokens", "16"])
    rows = result["rows"]
    assert [(r["decode_loop"], r["cache_phases"]) for r in rows] == list(bench.SETTINGS)
    # the same weights and prompts go in; the compiled programs differ in their scratch
    assert len({r["argument_gib"] for r in rows}) == 1 and rows[0]["argument_gib"] > 0
    for r in rows:
        assert r["temp_gib"] > 0 and r["compile_s"] > 0
        assert abs(r["peak_gib"] - r["argument_gib"] - r["temp_gib"]) <= 0.002
    # the unrolled loop holds its own copy of every layer's o/down weights and norms
    by = {(r["decode_loop"], r["cache_phases"]): r for r in rows}
    assert by["unrolled", 1]["temp_gib"] > by["scanned", 1]["temp_gib"]
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1]) == result
    assert "| tiny | unrolled | 4 |" in "\n".join(out)
