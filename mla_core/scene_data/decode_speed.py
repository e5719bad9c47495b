"""DecodeSpeed: one attention decode step against context, MHA, GQA-8, MQA and absorbed MLA.

The timings come from the decode benchmark (`mla_core.bench.decode`, `python -m mla_core bench
decode`): its JSON at the default path `bench/results/decode_<device>.json` when it exists,
else a short run of the same benchmark in this process (`QUICK_RUN`: bfloat16, batch 1,
contexts 1k-8k; on a CPU one thread timed on its CPU clock, about 30 s on a busy 2-core AMD EPYC,
a third of it compiling the CPU kernels).
Timings belong to the machine that made them: the data is cached, and its provenance says which
machine, which dtype, when, and whether it came from a JSON file or a quick run.

Beside each measured step time the data carries the roofline floor max(bytes / bandwidth,
FLOPs / matmul rate) of the same case (bytes and FLOPs counted from the shapes by
`bench.decode_attention.step_cost`, both ceilings measured on that machine), and what one more
token of context costs each variant in bytes and FLOPs: what decides whether a step is
memory-bound (MHA, reading its big cache) or compute-heavy (absorbed MLA, which scores 576
numbers per token in every one of 128 heads).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mla_core.errors import UserError
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import REPO, SceneData

# A quick run is a measurement timed on one thread's CPU clock, which other work beside it
# does not disturb: render.py leaves it to the scene's own manim process, started first,
# rather than making every other scene wait for it (`scene_data.check_scene_data`).
COMPUTED_IN_SCENE_PROCESS = True

VARIANTS = ("mha", "gqa", "mqa", "mla_absorbed")  # naive MLA is the benchmark's, not the story's
PREFERRED_DTYPE = "bfloat16"  # what DeepSeek caches in; else the JSON's first dtype
QUICK_RUN = {"dtypes": ["bfloat16"], "contexts": [1024, 2048, 4096, 8192], "batches": [1]}


def default_json_path(device: str) -> Path:
    """Where `python -m mla_core bench decode --device DEVICE` writes its JSON by default."""
    return REPO / "bench" / "results" / f"decode_{device}.json"


def cache_inputs(inputs: SceneInputs) -> dict:
    """What this data depends on besides the parameters: the benchmark JSON, if any (so a new
    benchmark run is drawn, not the cached older one)."""
    path = default_json_path(inputs.device)
    if not path.is_file():
        return {"bench_json": None}
    from mla_core.loading.weights import sha256_of_file

    return {"bench_json": sha256_of_file(path)}


def decode_speed(inputs: SceneInputs, json_path: Path | None = None) -> SceneData:
    """DecodeSpeed: step time and roofline floor per variant and context (one dtype, one batch)."""
    path = Path(json_path) if json_path is not None else default_json_path(inputs.device)
    if path.is_file():
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read the decode benchmark JSON {path}: {err}") from None
        measured = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        source = {"source": "json", "json": _shown_path(path)}
    else:
        from mla_core.bench.decode import run_decode_benchmark

        started = datetime.now(UTC)
        # On a CPU, one thread timed on its own CPU clock: the machine that renders the video
        # is often busy with other work, which the wall clock would count (`bench decode`'s
        # --threads 1 --clock thread). A GPU is timed on the wall clock.
        import torch

        on_cpu = inputs.device == "cpu"
        threads = torch.get_num_threads()  # the benchmark sets torch's threads for the process
        try:
            report = run_decode_benchmark(
                device=inputs.device,
                variants=list(VARIANTS),
                quick=True,
                progress=False,
                threads=1 if on_cpu else None,
                clock="thread" if on_cpu else "wall",
                **QUICK_RUN,
            )
        finally:
            torch.set_num_threads(threads)
        measured = datetime.now(UTC)
        seconds = (measured - started).total_seconds()
        source = {"source": "quick run", "quick_run_seconds": round(seconds, 1)}
    return decode_speed_from_report(
        report, {**source, "measured_utc": measured.strftime("%Y-%m-%d %H:%M UTC")}
    )


def decode_speed_from_report(report: dict, provenance: dict) -> SceneData:
    """The scene's arrays from a decode benchmark report (the JSON's contents)."""
    from mla_core.bench.decode_attention import DecodeDims, step_cost

    try:
        runs = report["runs"]
        dtypes = [run["dtype"] for run in runs]
        dims = DecodeDims(**report["dims"])
    except (KeyError, TypeError) as err:
        raise UserError(f"not a decode benchmark report (missing {err})") from None
    if not runs:
        raise UserError("the decode benchmark report has no runs")
    run = runs[dtypes.index(PREFERRED_DTYPE)] if PREFERRED_DTYPE in dtypes else runs[0]
    results = [r for r in run["results"] if r["variant"] in VARIANTS]
    batch = min((r["batch"] for r in results), default=None)
    results = [r for r in results if r["batch"] == batch]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    by_case = {(r["variant"], r["context"]): r for r in results}
    # contexts that every variant ran at (a case too big for the memory is skipped by the run)
    contexts = sorted(
        t for t in {r["context"] for r in results} if all((v, t) in by_case for v in variants)
    )
    if len(contexts) < 2 or "mha" not in variants:
        raise UserError(
            "the decode benchmark report needs MHA and at least two contexts that every "
            "variant ran at, at one batch size"
        )

    def grid(field: str, dtype=np.float64) -> np.ndarray:
        return np.array([[by_case[v, t][field] for t in contexts] for v in variants], dtype)

    dtype_bytes = {"float32": 4, "bfloat16": 2}[run["dtype"]]
    per_token = {}
    for v in variants:  # one more token of context: the cache's bytes and the FLOPs on them
        one, two = (step_cost(v, dims, t, batch, dtype_bytes) for t in (1, 2))
        per_token[v] = {"bytes": two.bytes_read - one.bytes_read, "flops": two.flops - one.flops}
    roofline = run["roofline"]
    return SceneData(
        "decode_speed",
        arrays={
            "contexts": np.array(contexts, np.int64),
            "median_s": grid("median_s"),  # [variant, context]
            "floor_s": grid("floor_s"),
            "bytes": grid("bytes", np.int64),
            "flops": grid("flops", np.int64),
        },
        meta={
            "variants": variants,
            "labels": [by_case[v, contexts[0]]["label"] for v in variants],
            "bound": [[by_case[v, t]["bound"] for t in contexts] for v in variants],
            "per_token": per_token,
            "dtype": run["dtype"],
            "dtype_bytes": dtype_bytes,
            "batch": batch,
            "bandwidth": roofline["bandwidth"],
            "matmul_rate": roofline["matmul_rate"],
            "dims": report["dims"],
            "provenance": {
                **provenance,
                "device": report.get("device"),
                "device_name": report.get("device_name"),
                "torch": report.get("torch"),
                "threads": report.get("threads"),
                "compiled": report.get("compiled"),
                "clock": report.get("clock"),
                "computed_by": "mla_core.bench.decode",
            },
        },
    )


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return os.path.basename(path)
