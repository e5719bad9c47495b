"""DecodeSpeed: the scene data read from a decode benchmark JSON (written here in tmp_path by
the benchmark itself, at tiny contexts), its bytes, FLOPs and roofline floors recomputed from
the shapes and the stored ceilings, never its timings (they belong to the machine)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from helpers import render_final_frame, shown_texts

import mla_core.scene_data.decode_speed as ds
from mla_core.errors import UserError
from mla_core.scene_data import data_for_scene
from mla_core.scene_data.params import PARAMS_ENV, load_params
from mla_core.scene_data.store import CACHE_DIR_ENV, DataCache

CPU = SimpleNamespace(device="cpu")
H, D, G, D_C, D_R, D_NOPE, D_V = 128, 128, 8, 512, 64, 128, 128  # DeepSeek-V3 widths
CONTEXTS = [64, 128, 256]


def expected_cost(variant: str, t: int, b: int, nbytes: int) -> tuple[int, int]:
    """(bytes read, FLOPs) of one decode step, written out from the shapes."""
    if variant == "mha":
        return 2 * H * D * t * b * nbytes, 2 * 2 * H * D * t * b
    if variant == "gqa":
        return 2 * G * D * t * b * nbytes, 2 * 2 * H * D * t * b
    if variant == "mqa":
        return 2 * D * t * b * nbytes, 2 * 2 * H * D * t * b
    weights = H * (D_NOPE + D_V) * D_C  # W_UK and W_UV, read once per step
    flops = 2 * H * ((D_C + D_R) + D_C) * t * b + 2 * weights * b
    return ((D_C + D_R) * t * b + weights) * nbytes, flops


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """A real `bench decode` report at tiny contexts, two dtypes, batch 1, all variants.

    The machine's ceilings are fixed numbers here and each kernel is timed once (measuring
    takes most of a quick run's time, and only the arithmetic on the numbers is tested)."""
    import mla_core.bench.decode as bench
    from mla_core.bench.decode_report import write_json
    from mla_core.bench.roofline import Roofline
    from mla_core.bench.timer import Timing

    def fixed_roofline(dtype, device, **_):
        name = str(dtype).removeprefix("torch.")
        return Roofline(20.5e9, 1.5e11 if name == "bfloat16" else 0.6e11, name, str(device))

    def time_once(fn, *_, clock, **__):
        start = clock()
        result = fn()
        return Timing([clock() - start], result=result)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "measure_roofline", fixed_roofline)
        patch.setattr(bench, "time_calls", time_once)
        report = bench.run_decode_benchmark(
            device="cpu",
            dtypes=["float32", "bfloat16"],
            contexts=CONTEXTS,
            batches=[1],
            compile_kernels=False,
            quick=True,
            progress=False,
        )
    path = tmp_path_factory.mktemp("bench") / "decode_cpu.json"
    write_json(report, path)
    return path


def test_reads_bfloat16_batch_1_of_the_story_variants(bench_json):
    data = ds.decode_speed(CPU, json_path=bench_json)
    assert data["dtype"] == "bfloat16" and data["dtype_bytes"] == 2 and data["batch"] == 1
    assert data["variants"] == ["mha", "gqa", "mqa", "mla_absorbed"]  # no naive MLA
    assert data["labels"] == ["MHA", "GQA-8", "MQA", "MLA absorbed"]
    assert list(data["contexts"]) == CONTEXTS
    assert data["median_s"].shape == data["floor_s"].shape == (4, len(CONTEXTS))
    prov = data.provenance
    assert prov["source"] == "json" and prov["json"].endswith("decode_cpu.json")
    assert prov["device"] == "cpu" and prov["device_name"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", prov["measured_utc"])


def test_bytes_flops_and_floors_are_recomputed(bench_json):
    data = ds.decode_speed(CPU, json_path=bench_json)
    report = json.loads(bench_json.read_text())
    roofline = next(r for r in report["runs"] if r["dtype"] == "bfloat16")["roofline"]
    assert data["bandwidth"] == roofline["bandwidth"]
    assert data["matmul_rate"] == roofline["matmul_rate"]
    for i, variant in enumerate(data["variants"]):
        for j, t in enumerate(CONTEXTS):
            nbytes, flops = expected_cost(variant, t, 1, 2)
            assert data["bytes"][i, j] == nbytes, (variant, t)
            assert data["flops"][i, j] == flops, (variant, t)
            floor = max(nbytes / roofline["bandwidth"], flops / roofline["matmul_rate"])
            assert data["floor_s"][i, j] == pytest.approx(floor, rel=1e-12)
            memory = nbytes / roofline["bandwidth"] >= flops / roofline["matmul_rate"]
            assert data["bound"][i][j] == ("memory" if memory else "compute")
            assert data["median_s"][i, j] > 0


def test_per_token_costs_are_the_reference_numbers(bench_json):
    """REFERENCE.md 'Speed': per context token MHA reads 65,536 bytes (bf16) for 65,536 FLOPs;
    absorbed MLA reads 1,152 bytes for 128 x (576 + 512) x 2 = 278,528 FLOPs."""
    per_token = ds.decode_speed(CPU, json_path=bench_json)["per_token"]
    assert (
        per_token["mha"]
        == {"bytes": 2 * H * D * 2, "flops": 4 * H * D}
        == {
            "bytes": 65_536,
            "flops": 65_536,
        }
    )
    assert per_token["mla_absorbed"] == {"bytes": 1_152, "flops": H * (576 + 512) * 2}
    assert per_token["mla_absorbed"]["flops"] == 278_528
    assert per_token["gqa"]["bytes"] == 2 * G * D * 2 and per_token["mqa"]["bytes"] == 2 * D * 2


def test_the_smallest_batch_is_drawn(bench_json):
    report = json.loads(bench_json.read_text())
    for run in report["runs"]:
        run["results"] += [{**r, "batch": 4, "median_s": 9.0} for r in run["results"]]
    data = ds.decode_speed_from_report(report, {})
    assert data["batch"] == 1 and data["median_s"].max() < 9.0


def test_contexts_a_variant_skipped_are_left_out(bench_json):
    report = json.loads(bench_json.read_text())
    for run in report["runs"]:
        run["results"] = [
            r for r in run["results"] if not (r["variant"] == "mha" and r["context"] == 256)
        ]
    assert list(ds.decode_speed_from_report(report, {})["contexts"]) == [64, 128]


def test_float32_only_report_and_bad_reports(tmp_path, bench_json):
    report = json.loads(bench_json.read_text())
    report["runs"] = [r for r in report["runs"] if r["dtype"] == "float32"]
    data = ds.decode_speed_from_report(report, {"source": "test"})
    assert data["dtype"] == "float32" and data["per_token"]["mha"]["bytes"] == 2 * H * D * 4
    with pytest.raises(UserError, match="two contexts"):
        one = json.loads(json.dumps(report))
        one["runs"][0]["results"] = [
            r for r in one["runs"][0]["results"] if r["context"] == CONTEXTS[0]
        ]
        ds.decode_speed_from_report(one, {})
    with pytest.raises(UserError, match="not a decode benchmark report"):
        ds.decode_speed_from_report({"runs": []}, {})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        ds.decode_speed(CPU, json_path=broken)


def test_without_json_it_runs_the_quick_benchmark(tmp_path, monkeypatch, bench_json):
    """No JSON: a quick run in-process (faked here: timings are not what is tested), on a CPU
    one thread on its CPU clock; the provenance says so."""
    import torch

    calls = []
    report = json.loads(bench_json.read_text())
    threads = torch.get_num_threads()

    def fake_run(**kwargs):
        calls.append(kwargs)
        torch.set_num_threads(kwargs["threads"])  # as the benchmark does
        return report

    monkeypatch.setattr("mla_core.bench.decode.run_decode_benchmark", fake_run)
    data = ds.decode_speed(CPU, json_path=tmp_path / "absent.json")
    assert data.provenance["source"] == "quick run"
    assert data.provenance["quick_run_seconds"] >= 0
    (kwargs,) = calls
    assert kwargs["quick"] and kwargs["threads"] == 1 and kwargs["clock"] == "thread"
    assert kwargs["dtypes"] == ["bfloat16"] and kwargs["batches"] == [1]
    assert kwargs["variants"] == list(ds.VARIANTS)
    assert torch.get_num_threads() == threads  # the rest of the process keeps its threads


def test_a_new_benchmark_json_is_not_served_stale_from_the_cache(tmp_path, monkeypatch, bench_json):
    path = tmp_path / "decode_cpu.json"
    monkeypatch.setattr(ds, "default_json_path", lambda device: path)
    params = load_params(None, {"device": "cpu"})
    cache = DataCache(tmp_path / "scene_data")
    report = json.loads(bench_json.read_text())
    path.write_text(json.dumps(report))
    first = data_for_scene("DecodeSpeed", params, cache)
    assert data_for_scene("DecodeSpeed", params, cache).checksum() == first.checksum()
    assert cache.hits == 1
    for run in report["runs"]:
        run["roofline"]["bandwidth"] *= 2  # another machine's ceilings
    path.write_text(json.dumps(report))
    second = data_for_scene("DecodeSpeed", params, cache)
    assert second["bandwidth"] == 2 * first["bandwidth"]
    assert cache.misses == 2


@pytest.mark.slow
def test_scene_names_the_machine_and_the_costs(tmp_path, monkeypatch, bench_json):
    from scenes.decode_speed import DecodeSpeed

    monkeypatch.setattr(ds, "default_json_path", lambda device: bench_json)
    monkeypatch.setenv(PARAMS_ENV, load_params(None, {"device": "cpu"}).to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    scene, _ = render_final_frame(DecodeSpeed, tmp_path)
    shown = scene.shown_numbers
    report = json.loads(bench_json.read_text())
    assert shown["machine"].startswith(report["device_name"])
    assert "bfloat16" in shown["machine"] and "batch 1" in shown["machine"]
    assert shown["per_token"]["MHA"] == "65,536 bytes, 65,536 FLOPs"
    assert shown["per_token"]["MLA absorbed"] == "1,152 bytes, 278,528 FLOPs"
    assert shown["mla_byte_ratio"] == f"{65_536 / 1_152:.1f}\u00d7"
    assert shown["mla_flop_ratio"] == f"{278_528 / 65_536:.2f}\u00d7"
    texts = " | ".join(shown_texts(scene))
    for value in [shown["machine"], *shown["per_token"].values(), "benchmark JSON"]:
        assert value in texts
