"""scripts/bad_inputs.py: its case list is well formed, and a few of its cases, one of each
kind, behave (the whole list takes minutes: run the script itself for that)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import bad_inputs  # noqa: E402
from bad_inputs import CASES, Case, run_cases  # noqa: E402

HANG_GUARD_S = 600  # per case: a hang guard, not a speed check (a busy machine is slow)

# One case of each kind: argparse, a scene name, an output folder, a parameter file, --set,
# a broken weights folder through both programs, a bad number, an unwritable --out.
SAMPLE = (
    "render.py frobnicate",
    "render.py render NoSuchScene",
    "render.py --media-dir {file} render Hook",
    "render.py --params {fx}/not-toml.toml list",
    "render.py still NextToken --set top_k=11",
    "render.py still NextToken --set weights={fx}/nan",
    "python -m mla_core cache --config deepseek-v3 --dtype-bytes 3",
    "python -m mla_core predict --prompt ' Hi' --weights {fx}/pickle",
    "python -m mla_core predict --prompt ' Hi' --weights {fx}/n-embd-abc",
    "python -m mla_core sweep --out {file}/s.json",
)


def test_the_case_list_is_well_formed():
    commands = [case.command for case in CASES]
    assert len(CASES) >= 80
    assert len(set(commands)) == len(commands), "a case is listed twice"
    programs = {case.program for case in CASES}
    assert programs == {"render.py", "mla_core"}
    for case in CASES:
        assert case.exit_code == 2
        assert all(isinstance(a, str) for a in case.argv)
        assert case.mentions or not case.argv, f"{case.command}: say what the message names"
    # every subcommand of both programs is covered
    for sub in ("render", "still", "data", "video", "figures", "list"):
        assert any(c.program == "render.py" and sub in c.argv for c in CASES), sub
    for sub in ("cache", "predict", "attention", "convert", "sweep", "deepseek-attention",
                "bench", "heads"):  # fmt: skip
        assert any(c.program == "mla_core" and c.argv[:1] == (sub,) for c in CASES), sub
    # every scene parameter of video.toml is given a bad value through --set
    from mla_core.scene_data.params import PARAM_NAMES

    for name in PARAM_NAMES:
        assert any(f"{name}=" in " ".join(c.argv) for c in CASES), name
    assert set(SAMPLE) <= set(commands)


@pytest.fixture(scope="module")
def sample_results():
    return run_cases([c for c in CASES if c.command in SAMPLE], timeout=HANG_GUARD_S)


@pytest.mark.parametrize("command", SAMPLE)
def test_a_sample_of_the_cases_behaves(sample_results, command):
    (result,) = [res for res in sample_results if res.case.command == command]
    assert result.ok, (result.message, result.problems)
    assert result.exit_code == 2 and result.message.startswith("error:")


def test_the_checks_can_fail(tmp_path):
    """A command that succeeds, and one that writes a file, are both reported as misbehaving."""
    good, writes = (
        Case("mla_core", ("cache", "--config", "deepseek-v3"), "x"),
        Case("render.py", ("data", "Hook", "--save", "{dir}/hook.npz"), "x"),
    )
    results = run_cases([good, writes], timeout=HANG_GUARD_S)
    assert [res.ok for res in results] == [False, False]
    assert "exit code 0, want 2" in results[0].problems
    assert any(p.startswith("wrote hook.npz") for p in results[1].problems)


def test_the_table_is_markdown():
    results = [bad_inputs.Result(CASES[0], 2, "error: a | b", [], 0.1)]
    table = bad_inputs.markdown_table(results)
    assert "| command | exit code | message |" in table
    assert "error: a \\| b" in table
