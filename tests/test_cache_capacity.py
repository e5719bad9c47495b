"""The capacity model: how many sequences' KV caches fit in a memory budget.

Oracle: the per-token byte counts of shared/REFERENCE.md (V3, bf16: MHA 3,997,696, GQA-8
249,856, MQA 31,232, MLA 70,272), divided into the budget by hand.
"""

from __future__ import annotations

import pytest

from mla_core.analysis.cache_size import cache_report, resolve_dims, sequences_that_fit
from mla_core.cli import main
from mla_core.errors import UserError

V3_BYTES_PER_TOKEN = {"mha": 3_997_696, "gqa": 249_856, "mqa": 31_232, "mla": 70_272}


def test_v3_in_80_gb_at_32k_tokens() -> None:
    dims = resolve_dims("deepseek-v3")
    budget, context = 80e9, 32_768
    # e.g. MLA: 70,272 B * 32,768 = 2,302,672,896 B per sequence; 80e9 / that = 34.7 -> 34.
    expected = {"mha": 0, "gqa": 9, "mqa": 78, "mla": 34}
    for kind, per_token in V3_BYTES_PER_TOKEN.items():
        assert int(budget // (per_token * context)) == expected[kind]
        assert sequences_that_fit(dims, kind, context, budget, 2, groups=8) == expected[kind]


def test_capacity_at_the_boundary() -> None:
    dims = resolve_dims("deepseek-v3")
    one_sequence = 70_272 * 1000
    assert sequences_that_fit(dims, "mla", 1000, 3 * one_sequence) == 3
    assert sequences_that_fit(dims, "mla", 1000, 3 * one_sequence - 1) == 2
    with pytest.raises(UserError, match="context=0"):
        sequences_that_fit(dims, "mla", 0, 1e9)


def test_report_and_cli(capsys) -> None:
    report = cache_report(resolve_dims("deepseek-v3"), 2, 4096, 8, memory_gb=80)
    assert report["sequences_that_fit"] == {
        k: int(80e9 // (v * 4096)) for k, v in V3_BYTES_PER_TOKEN.items()
    }
    argv = ["cache", "--config", "deepseek-v3", "--context", "32768", "--memory-gb", "80"]
    assert main([*argv, "--gqa-groups", "8"]) == 0
    out = capsys.readouterr().out
    assert "seqs in 80 GB" in out and out.splitlines()[-1].split()[-1] == "34"
    assert main(["cache", "--config", "deepseek-v3", "--memory-gb", "80"]) == 2
    assert "--context" in capsys.readouterr().err
