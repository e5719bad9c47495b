#!/usr/bin/env python
"""Every bad input, on every command, is one line and exit 2, and writes nothing.

    python scripts/bad_inputs.py              run every case (2 at a time), print the table,
                                              rewrite docs/reliability.md
    python scripts/bad_inputs.py -k weights   only the cases whose command contains "weights"
    python scripts/bad_inputs.py --timeout 180   more time per case on a busy machine
    python scripts/bad_inputs.py --no-doc     do not rewrite docs/reliability.md

Each case is one command line of `render.py` or `python -m mla_core` with one bad value in
it. A case behaves when the command exits 2, stderr's last non-empty line starts with
"error:" (and names the bad value: `mentions`), no traceback is printed, and no file
appeared in the case's own folder (its current directory, --media-dir and --figures-dir).
Every case runs in a fresh temporary folder, never in the repository; the broken weights
folders it uses are built there first. Cases that render fail before manim starts: none
renders a frame. Exit status: 0 when every case behaves, 1 otherwise (the bad ones listed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mla_core.atomic import write_text_atomically  # noqa: E402

DOC = REPO / "docs" / "reliability.md"
TIMEOUT_S = 60
MAX_WORKERS = 2  # the machine is shared: never more than two commands at once


@dataclass(frozen=True)
class Case:
    """One bad command line. `argv` follows the program; in it `{dir}` is the case's own
    folder, `{file}` a plain file, `{fx}` the fixtures folder (broken weights, parameter
    files). `mentions`: text the error line must contain (the bad value, or what is allowed)."""

    program: str  # "render.py" or "mla_core"
    argv: tuple[str, ...]
    mentions: str = ""
    exit_code: int = 2

    @property
    def command(self) -> str:
        """The command as shown in the table, with the placeholders left in."""
        prefix = "render.py" if self.program == "render.py" else "python -m mla_core"
        return " ".join([prefix, *(_quoted(a) for a in self.argv)])


def _quoted(arg: str) -> str:
    return repr(arg) if arg == "" or any(c in arg for c in " \"'") else arg


def r(*argv: str, mentions: str = "") -> Case:
    """A render.py case; its media and figures folders are the case's own."""
    return Case("render.py", argv, mentions)


def m(*argv: str, mentions: str = "") -> Case:
    return Case("mla_core", argv, mentions)


LONG_PROMPT = " a b c d e f g h i j k l m n o p"  # 17 tokens: more than a scene strip holds
TOO_LONG_FOR_TINY = " word" * 80  # 80 tokens: more than the tiny fixture's 64 positions

ATTENTION = ("attention", "--prompt", " Hi")
PREDICT = ("predict", "--prompt", " Hi", "--weights")

# fmt: off
CASES: tuple[Case, ...] = (
    # --- render.py: the command line itself --------------------------------------------------
    r(mentions="required"),
    r("frobnicate", mentions="invalid choice"),
    r("render", mentions="required: SCENE"),
    r("render", "NoSuchScene", mentions="unknown scene 'NoSuchScene'"),
    r("still", "hook", mentions="unknown scene 'hook'"),
    r("data", "NoSuchScene", mentions="unknown scene"),
    r("still", "Hook", "--frobnicate", mentions="unrecognized arguments"),
    r("render", "Hook", "-q", mentions="expected one argument"),
    r("render", "Hook", "-q", "ultra", mentions="'ultra'"),
    r("video", "-q", "8k", mentions="'8k'"),
    r("figures", "-q", "", mentions="''"),
    r("render", "Hook", "--jobs", "0", mentions="--jobs 0 must be >= 1"),
    r("video", "--jobs", "-3", mentions="--jobs -3 must be >= 1"),
    r("still", "Hook", "--jobs", "two", mentions="'two'"),
    r("figures", "--jobs", "0", mentions="--jobs 0"),
    # --- render.py: output folders --------------------------------------------------------------
    r("--media-dir", "{file}", "render", "Hook", mentions="is a file, not a folder"),
    r("--media-dir", "{file}/media", "still", "Hook", mentions="cannot write into"),
    r("--media-dir", "{file}", "video", mentions="is a file, not a folder"),
    r("--figures-dir", "{file}", "still", "Hook", mentions="is a file, not a folder"),
    r("--figures-dir", "{file}/figures", "figures", mentions="cannot write into"),
    r("data", "Hook", "--save", "{dir}", mentions="is a folder; give a file name"),
    r("data", "Hook", "--save", "{file}/x.npz", mentions="is a file, not a folder"),
    # --- render.py: the parameter file ---------------------------------------------------------
    r("--params", "{dir}/missing.toml", "list", mentions="does not exist"),
    r("--params", "{fx}/not-toml.toml", "list", mentions="is not valid TOML"),
    r("--params", "{fx}/video-not-table.toml", "list", mentions="must be a table"),
    r("--params", "{fx}/unknown-param.toml", "list", mentions="unknown parameter 'colour'"),
    r("--params", "{fx}/top-k-text.toml", "list", mentions="top_k='five' must be a int"),
    r("--params", "{fx}/nul-prompt.toml", "list", mentions="NUL"),
    r("--params", "{fx}/not-utf8.toml", "list", mentions="is not valid TOML"),
    # --- render.py: --set, every parameter of video.toml -----------------------------------------
    r("still", "Hook", "--set", "top_k", mentions="must look like NAME=VALUE"),
    r("still", "Hook", "--set", "colour=red", mentions="unknown parameter 'colour'"),
    r("--set", "top_k=0", "list", mentions="top_k=0 is not allowed"),
    r("still", "Hook", "--set", "quality=ultra", mentions="quality 'ultra' is not allowed"),
    r("still", "NextToken", "--set", "prompt=", mentions="prompt is empty"),
    r("still", "NextToken", "--set", f"prompt={LONG_PROMPT}", mentions="tokens long"),
    r("still", "NextToken", "--set", "weights={dir}/missing", mentions="does not exist"),
    r("still", "NextToken", "--set", "weights={file}", mentions="{file}"),
    r("still", "NextToken", "--set", "weights={fx}/nan", mentions="NaN"),
    r("still", "NextToken", "--set", "weights={fx}/pickle", mentions="pickle"),
    r("render", "Hook", "--set", "device=tpu", mentions="device 'tpu' is not allowed"),
    r("still", "AttentionPatterns", "--set", "heads=5", mentions="is not LAYER.HEAD"),
    r("still", "AttentionPatterns", "--set", "heads=a.b", mentions="is not LAYER.HEAD"),
    r("still", "AttentionPatterns", "--set", "heads=-1.0", mentions="is not LAYER.HEAD"),
    r("still", "AttentionPatterns", "--set", "heads=", mentions="is not LAYER.HEAD"),
    r("still", "AttentionPatterns", "--set", "heads=9.9", mentions="layer 9 is out of range"),
    r("still", "AttentionPatterns", "--set", "show_bos=maybe", mentions="want true or false"),
    r("still", "NextToken", "--set", "top_k=0", mentions="top_k=0 is not allowed"),
    r("still", "NextToken", "--set", "top_k=11", mentions="use 1..10"),
    r("still", "NextToken", "--set", "top_k=five", mentions="want a whole number"),
    r("still", "NextToken", "--set", "top_k=nan", mentions="'nan'"),
    r("still", "NextToken", "--set", "top_k=1e3", mentions="'1e3'"),
    r("still", "KVCacheGrowth", "--set", "new_tokens=0", mentions="new_tokens=0 is not allowed"),
    r("still", "KVCacheGrowth", "--set", "new_tokens=9", mentions="use 1..8"),
    r("still", "KVCacheGrowth", "--set", "new_tokens=inf", mentions="'inf'"),
    r("still", "LatentKV", "--set", "latent_rank=-1", mentions="latent_rank=-1"),
    r("still", "LatentKV", "--set", "latent_rank=abc", mentions="want a whole number"),
    r("still", "LatentKV", "--set", "latent_rank=100000", mentions="100000"),
    r("render", "Hook", "--set", "voice=loud", mentions="want true or false"),
    r("data", "NextToken", "--set", "top_k=-2", mentions="top_k=-2 is not allowed"),
    # --- python -m mla_core: the command line itself ----------------------------------------------
    m(mentions="required"),
    m("frobnicate", mentions="invalid choice"),
    m("cache", mentions="--config"),
    m("predict", "--top-k", "3", mentions="--prompt"),
    m("bench", mentions="required"),
    # --- cache: bad numbers and configs -------------------------------------------------------
    m("cache", "--config", "nosuch", mentions="nosuch"),
    m("cache", "--config", "{dir}/missing.json", mentions="missing.json"),
    m("cache", "--config", "{fx}/not-json.json", mentions="not-json.json"),
    m("cache", "--config", "{dir}", mentions="{dir}"),
    m("cache", "--config", "deepseek-v3", "--dtype-bytes", "0", mentions="bytes=0"),
    m("cache", "--config", "deepseek-v3", "--dtype-bytes", "3", mentions="bytes=3"),
    m("cache", "--config", "deepseek-v3", "--context", "-1", mentions="-1"),
    m("cache", "--config", "deepseek-v3", "--context", "abc", mentions="'abc'"),
    m("cache", "--config", "deepseek-v3", "--gqa-groups", "0", mentions="0"),
    m("cache", "--config", "deepseek-v3", "--gqa-groups", "7", mentions="7"),
    m("cache", "--config", "deepseek-v3", "--context", "9", "--memory-gb", "nan", mentions="nan"),
    m("cache", "--config", "deepseek-v3", "--context", "9", "--memory-gb", "inf", mentions="inf"),
    m("cache", "--config", "deepseek-v3", "--context", "9", "--memory-gb", "-1", mentions="-1"),
    # --- predict: broken weights folders ----------------------------------------------------------
    m(*PREDICT, "{dir}/missing", mentions="does not exist"),
    m(*PREDICT, "{file}", mentions="{file}"),
    m(*PREDICT, "{fx}/no-safetensors", mentions="model.safetensors"),
    m(*PREDICT, "{fx}/pickle", mentions="pickle"),
    m(*PREDICT, "{fx}/int", mentions="int32"),
    m(*PREDICT, "{fx}/nan", mentions="NaN"),
    m(*PREDICT, "{fx}/n-embd-abc", mentions="n_embd='abc'"),
    m(*PREDICT, "{fx}/config-not-json", mentions="config.json"),
    m(*PREDICT, "{fx}/wrong-shape", mentions="shape"),
    m(*PREDICT, "{fx}/truncated", mentions="safetensors"),
    m(*PREDICT, "{fx}/bad-sha256", mentions="sha256"),
    m(*PREDICT, "{fx}/empty", mentions="{fx}/empty"),
    m("predict", "--prompt", " Hi", "--top-k", "0", mentions="--top-k 0 must be >= 1"),
    m("predict", "--prompt", "", "--weights", "{fx}/good", mentions="empty"),
    m("predict", "--prompt", TOO_LONG_FOR_TINY, "--weights", "{fx}/good", mentions="64"),
    m("predict", "--prompt", " Hi", "--device", "tpu", mentions="'tpu'"),
    # --- attention -------------------------------------------------------------------------------
    m(*ATTENTION, "--layer", "-1", "--head", "0", mentions="--layer -1"),
    m(*ATTENTION, "--layer", "nan", "--head", "0", mentions="'nan'"),
    m(*ATTENTION, "--layer", "9", "--head", "0", "--weights", "{fx}/good",
      mentions="--layer 9 is out of range"),
    m(*ATTENTION, "--layer", "0", "--head", "9", "--weights", "{fx}/good",
      mentions="--head 9 is out of range"),
    m(*ATTENTION, "--layer", "0", "--head", "0", "--model", "mla",
      mentions="--rank R is required"),
    m(*ATTENTION, "--layer", "0", "--head", "0", "--model", "mla", "--rank",
      "0", "--weights", "{fx}/good", mentions="0"),
    m(*ATTENTION, "--layer", "0", "--head", "0", "--model", "xyz",
      mentions="'xyz'"),
    m(*ATTENTION, "--layer", "0", "--head", "0", "--out", "{dir}",
      mentions="is a folder; give a file name"),
    m(*ATTENTION, "--layer", "0", "--head", "0", "--out",
      "{dir}/missing/a.npz", mentions="does not exist"),
    # --- convert ---------------------------------------------------------------------------------
    m("convert", "--rank", "0", "--weights", "{fx}/good", mentions="0"),
    m("convert", "--rank", "-5", "--weights", "{fx}/good", mentions="-5"),
    m("convert", "--rank", "99999", "--weights", "{fx}/good", mentions="99999"),
    m("convert", "--rank", "abc", mentions="'abc'"),
    m("convert", "--rank", "8", "--out", "{file}", mentions="is a file, not a folder"),
    # --- sweep -----------------------------------------------------------------------------------
    m("sweep", "--ranks", "a,b", "--out", "{dir}/s.json", mentions="'a,b'"),
    m("sweep", "--ranks", ",", "--out", "{dir}/s.json", mentions="--ranks is empty"),
    m("sweep", "--ranks", "0", "--out", "{dir}/s.json", "--weights", "{fx}/good", mentions="0"),
    m("sweep", "--text", "{dir}/missing.txt", "--out", "{dir}/s.json", mentions="missing.txt"),
    m("sweep", "--text", "{dir}", "--out", "{dir}/s.json", mentions="{dir}"),
    m("sweep", "--max-windows", "0", "--out", "{dir}/s.json", mentions="--max-windows 0"),
    m("sweep", "--window", "0", "--out", "{dir}/s.json", "--weights", "{fx}/good",
      mentions="0"),
    m("sweep", "--out", "{dir}", mentions="is a folder; give a file name"),
    m("sweep", "--out", "{file}/s.json", mentions="is a file, not a folder"),
    # --- deepseek-attention ----------------------------------------------------------------------
    m("deepseek-attention", "--tokens", "0", mentions="--tokens 0"),
    m("deepseek-attention", "--tokens", "100000000", mentions="use 1..1024"),
    m("deepseek-attention", "--layer", "99", mentions="--layer 99"),
    m("deepseek-attention", "--head", "99", mentions="99"),
    m("deepseek-attention", "--head", "-1", mentions="-1"),
    m("deepseek-attention", "--config", "nosuch", mentions="nosuch"),
    m("deepseek-attention", "--config", "gpt2-small", mentions="gpt2-small"),
    m("deepseek-attention", "--config", "deepseek-v3", mentions="too big"),
    m("deepseek-attention", "--checkpoint", "{dir}/missing", mentions="missing"),
    m("deepseek-attention", "--checkpoint", "{file}", mentions="{file}"),
    m("deepseek-attention", "--checkpoint", "{fx}/good", mentions="{fx}/good"),
    m("deepseek-attention", "--out", "{dir}", mentions="is a folder; give a file name"),
    # --- bench decode: every value is checked before a kernel runs -------------------------------
    m("bench", "decode", "--device", "tpu", "--json", "{dir}/b.json", mentions="tpu"),
    m("bench", "decode", "--dtype", "float64", "--json", "{dir}/b.json", mentions="float64"),
    m("bench", "decode", "--contexts", "abc", "--json", "{dir}/b.json", mentions="abc"),
    m("bench", "decode", "--contexts", "0", "--json", "{dir}/b.json", mentions="0"),
    m("bench", "decode", "--batches", "0", "--json", "{dir}/b.json", mentions="batches"),
    m("bench", "decode", "--variants", "nope", "--json", "{dir}/b.json", mentions="nope"),
    m("bench", "decode", "--threads", "0", "--json", "{dir}/b.json", mentions="0"),
    m("bench", "decode", "--clock", "moon", "--json", "{dir}/b.json", mentions="'moon'"),
    m("bench", "decode", "--quick", "--json", "{dir}", mentions="{dir}"),
    m("bench", "decode", "--quick", "--json", "{dir}/b.json", "--plot", "{file}/b.png",
      mentions="{file}"),
    # --- heads -----------------------------------------------------------------------------------
    m("heads", "--repeat-tokens", "0", "--weights", "{fx}/good", mentions="got 0"),
    m("heads", "--sequences", "0", "--weights", "{fx}/good", mentions="0"),
    m("heads", "--repeat-tokens", "100000", "--weights", "{fx}/good", mentions="100000"),
)
# fmt: on


# --- fixtures: broken parameter files and weights folders -------------------------------------


def build_fixtures(folder: Path) -> None:
    """Parameter files and GPT-2 folders, each wrong in one way, beside one good tiny GPT-2."""
    import torch
    from safetensors.torch import load_file, save_file

    from mla_core.loading.weights import save_gpt2
    from mla_core.models.configs import GPT2Config
    from mla_core.models.gpt2 import GPT2

    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "not-toml.toml": "[video\nquality = low\n",
        "video-not-table.toml": "video = 3\n",
        "unknown-param.toml": '[video]\ncolour = "red"\n',
        "top-k-text.toml": '[video]\ntop_k = "five"\n',
        "nul-prompt.toml": '[video]\nprompt = "a\\u0000b"\n',
        "not-json.json": "{ this is not json",
    }
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "not-utf8.toml").write_bytes(b"[video]\nprompt = '\xff\xfe'\n")

    torch.manual_seed(0)  # a tiny GPT-2 with the real vocabulary, so real prompts work
    config = GPT2Config(name="tiny", n_ctx=64, n_embd=32, n_layer=2, n_head=4)
    good = save_gpt2(GPT2(config), folder / "good")
    tensors = load_file(good / "model.safetensors")
    config_text = (good / "config.json").read_text(encoding="utf-8")
    wte = next(k for k in tensors if k.endswith("wte.weight"))

    def variant(name: str, edit=None, config_edit=None, weights=True) -> Path:
        out = folder / name
        out.mkdir()
        data = json.loads(config_text)
        if config_edit:
            data.update(config_edit)
        (out / "config.json").write_text(json.dumps(data), encoding="utf-8")
        if weights:
            changed = dict(tensors)
            if edit:
                edit(changed)
            save_file(changed, out / "model.safetensors", metadata={"format": "pt"})
        return out

    variant("no-safetensors", weights=False)
    torch.save(tensors, variant("pickle", weights=False) / "pytorch_model.bin")
    variant("int", lambda t: t.update({wte: t[wte].round().to(torch.int32)}))
    nan = tensors[wte].clone()
    nan[0, 0] = float("nan")
    variant("nan", lambda t: t.update({wte: nan}))
    variant("n-embd-abc", config_edit={"n_embd": "abc"})
    variant("wrong-shape", lambda t: t.update({wte: t[wte][:, :16].contiguous()}))
    (variant("config-not-json") / "config.json").write_text("{ not json", encoding="utf-8")
    truncated = variant("truncated") / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    (variant("bad-sha256") / "model.safetensors.sha256").write_text("0" * 64 + "\n")
    (folder / "empty").mkdir()
    (folder / "a-file").write_text("not a folder, not weights\n", encoding="utf-8")


# --- running the cases -------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    exit_code: int | None  # None: timed out
    message: str  # the last non-empty line of stderr (the error), with temp paths shortened
    problems: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_case(
    case: Case, index: int, root: Path, fixtures: Path, timeout: float = TIMEOUT_S
) -> Result:
    """Run one case in its own folder under `root` and check how it failed."""
    folder = root / f"case-{index:03d}"
    folder.mkdir()
    names = {"dir": str(folder), "file": str(fixtures / "a-file"), "fx": str(fixtures)}
    argv = [a.format(**names) for a in case.argv]
    if case.program == "render.py":
        media, figures = str(folder / "media"), str(folder / "figures")
        if not any(a in ("--media-dir", "--figures-dir") for a in argv):
            argv = ["--media-dir", media, "--figures-dir", figures, *argv]
        command = [sys.executable, str(REPO / "render.py"), *argv]
    else:
        command = [sys.executable, "-m", "mla_core", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLA_")}
    env["PYTHONPATH"] = str(REPO)
    env["MLA_SCENE_DATA_CACHE"] = "off"  # nothing cached, nothing written
    env["HF_HUB_OFFLINE"] = "1"  # and nothing downloaded
    before = _files_under(folder)
    fixtures_before = _files_under(fixtures)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as err:
        code = None
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else ""
    seconds = time.perf_counter() - start
    # `weights = "auto"` says on one line which GPT-2 it chose before the model is needed; that
    # report is not an error message, so the one error line is counted without it
    lines = [
        line for line in stderr.splitlines() if line.strip() and not line.startswith("weights: ")
    ]
    message = lines[-1].strip() if lines else ""
    expected_mention = case.mentions.format(**names)
    problems = []
    if code is None:
        problems.append(f"timed out after {timeout:g} s")
    elif code != case.exit_code:
        problems.append(f"exit code {code}, want {case.exit_code}")
    if "Traceback" in stderr:
        problems.append("printed a traceback")
    if not message.startswith("error:"):
        problems.append("stderr's last line does not start with 'error:'")
    elif len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, want 1")
    if expected_mention and expected_mention not in message:
        problems.append(f"the message does not mention {expected_mention!r}")
    new = sorted(_files_under(folder) - before)
    if new:
        problems.append(f"wrote {', '.join(new[:3])}")
    if _files_under(fixtures) != fixtures_before:
        problems.append("changed the fixtures")
    shown = message.replace(names["file"], "FILE").replace(str(folder), "DIR")
    shown = shown.replace(str(fixtures), "FX")
    return Result(case, code, shown, problems, seconds)


def run_cases(
    cases: tuple[Case, ...] | list[Case], workers: int = MAX_WORKERS, timeout: float = TIMEOUT_S
) -> list[Result]:
    """Build the fixtures in a temporary folder and run `cases` (at most 2 at once)."""
    workers = max(1, min(workers, MAX_WORKERS))
    with tempfile.TemporaryDirectory(prefix="mla-bad-inputs-") as tmp:
        root = Path(tmp)
        fixtures = root / "fixtures"
        build_fixtures(fixtures)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(run_case, case, i, root, fixtures, timeout)
                for i, case in enumerate(cases)
            ]
            return [f.result() for f in futures]


# --- reporting -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(results: list[Result]) -> str:
    lines = [
        "# Bad input: one line, exit 2, nothing written",
        "",
        "Generated by `python scripts/bad_inputs.py` (do not edit by hand). Each row is one bad",
        "command line; it must exit 2 with one line on stderr starting with `error:`, print no",
        "traceback and write no file. `DIR` is the case's own empty folder (its current",
        "directory, media and figures folders), `FX` a folder of broken inputs (weights folders",
        "each wrong in one way, bad parameter files), `FILE` a plain file.",
        "",
        "| command | exit code | message |",
        "|---|---|---|",
    ]
    for res in results:
        command = res.case.command
        for name, shown in (("{dir}", "DIR"), ("{fx}", "FX"), ("{file}", "FILE")):
            command = command.replace(name, shown)
        code = "timeout" if res.exit_code is None else str(res.exit_code)
        if not res.ok:
            code += " (WRONG)"
        lines.append(f"| `{_cell(command)}` | {code} | {_cell(res.message)} |")
    lines.append("")
    return "\n".join(lines)


def print_table(results: list[Result]) -> None:
    for res in results:
        mark = "ok " if res.ok else "BAD"
        code = "T/O" if res.exit_code is None else str(res.exit_code)
        print(f"{mark} {code:>3} {res.seconds:5.1f}s  {res.case.command}")
        print(f"            {res.message}")
        for problem in res.problems:
            print(f"            !! {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-k", action="append", help="only cases whose command contains this text (repeatable)"
    )
    parser.add_argument("-j", "--jobs", type=int, default=MAX_WORKERS, help="at most 2")
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help="seconds per case (default 60)"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/reliability.md")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.k or any(k in c.command for k in args.k)]
    start = time.perf_counter()
    results = run_cases(cases, args.jobs, args.timeout)
    print_table(results)
    bad = [res for res in results if not res.ok]
    print(
        f"{len(results) - len(bad)}/{len(results)} cases behave "
        f"({time.perf_counter() - start:.0f} s)"
    )
    if not args.no_doc and args.k is None:
        write_text_atomically(DOC, markdown_table(results))
        print(f"wrote {DOC.relative_to(REPO)}")
    if bad:
        print("misbehaving:", *(f"  {res.case.command}" for res in bad), sep="\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
