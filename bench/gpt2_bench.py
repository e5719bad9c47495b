"""Benchmark: GPT-2-small-shaped model on this machine (not a test; nothing is asserted).

Random GPT-2-small weights (124M parameters, fixed seed) are saved as a Hugging Face folder
in a temp dir, then timed: resolving the folder (sha256 of 500 MB) and loading it, a forward
of 10 and of 512 tokens, a full capture of every head (10 and 128 tokens), and one decode step
with a KV cache of 512 tokens. Prints a table and writes bench/results/gpt2_bench.json.

    .venv/bin/python bench/gpt2_bench.py [--device cpu|cuda] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mla_core.analysis.capture import capture_attention  # noqa: E402
from mla_core.atomic import write_text_atomically  # noqa: E402
from mla_core.bench.timer import Timing, time_calls  # noqa: E402
from mla_core.loading.weights import check_device, load_gpt2_from_dir, resolve_weights, save_gpt2  # noqa: E402
from mla_core.models.configs import GPT2_SMALL  # noqa: E402
from mla_core.models.gpt2 import GPT2  # noqa: E402
from mla_core.models.kv_cache import KVCache  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpt2_bench.json"


def row(timing: Timing) -> dict[str, float]:
    """A timing as the JSON records it: median and min seconds, and how many calls."""
    return {"median_s": timing.median, "min_s": timing.best, "repeats": timing.repeats}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; on a busy 2-core machine 1 is "
        "far faster than 2, which then fight the other process for a core)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    ids = torch.randint(
        0, GPT2_SMALL.vocab_size, (1, 512), generator=torch.Generator().manual_seed(0)
    )
    results: dict[str, object] = {
        "model": "GPT-2 small architecture, random weights (seed 0), float32",
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
    }
    timings: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(prefix="gpt2_bench_") as tmp:
        torch.manual_seed(0)
        save_gpt2(GPT2(GPT2_SMALL), tmp)  # the random model is freed before loading
        resolved = time_calls(lambda: resolve_weights(tmp), 1, warmup=0)
        source = resolved.result
        timings["resolve (sha256 of the weights)"] = {"median_s": resolved.median}
        loaded = time_calls(
            lambda: load_gpt2_from_dir(source.path, device=device), 1, warmup=0, device=device
        )
        model = loaded.result
        timings["load"] = {"median_s": loaded.median}
        results["parameters"] = model.num_parameters()
        results["weights_bytes"] = (Path(tmp) / "model.safetensors").stat().st_size

    ids = ids.to(device)
    with torch.no_grad():
        for n in (10, 512):
            timings[f"forward {n} tokens"] = row(
                time_calls(lambda n=n: model(ids[:, :n]), args.repeats, device=device)
            )
        for n in (10, 128):
            prompt = ids[0, :n].tolist()
            timings[f"capture {n} tokens (all heads)"] = row(
                time_calls(
                    lambda p=prompt: capture_attention(model, p), args.repeats, device=device
                )
            )

        def decode_step() -> None:
            cache.keys = list(prefilled.keys)  # the 512-token cache, without the step's row
            cache.values = list(prefilled.values)
            model(ids[:, :1], kv_cache=cache)

        prefilled = KVCache(model.config.n_layer)
        model(ids[:, :511], kv_cache=prefilled)
        cache = KVCache(model.config.n_layer)
        timings["decode 1 token, KV cache of 511"] = row(
            time_calls(decode_step, args.repeats * 4, device=device)
        )
        results["kv_cache_bytes_511_tokens"] = prefilled.nbytes

    results["timings"] = timings
    results["peak_rss_bytes"] = peak_rss_bytes()
    if device == "cuda":
        results["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()

    print(
        f"GPT-2 small architecture ({results['parameters']:,} parameters) on {device}, "
        f"{results['threads']} threads, torch {results['torch']}"
    )
    print(f"{'what':<36}{'median':>12}{'min':>12}")
    for name, t in timings.items():
        low = f"{t['min_s'] * 1000:>10.1f}ms" if "min_s" in t else f"{'':>12}"
        print(f"{name:<36}{t['median_s'] * 1000:>10.1f}ms{low}")
    print(f"{'peak RSS':<36}{results['peak_rss_bytes'] / 2**30:>10.2f}GiB")
    if device == "cuda":
        print(f"{'peak CUDA memory':<36}{results['peak_cuda_bytes'] / 2**30:>10.2f}GiB")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(RESULTS, json.dumps(results, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
