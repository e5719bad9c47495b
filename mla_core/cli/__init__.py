"""The `python -m mla_core` command line: one subcommand per job.

Every subcommand turns bad input into one line on stderr naming the bad value and
what is allowed, with exit code 2 (see `mla_core.errors.UserError`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mla_core.errors import UserError

if TYPE_CHECKING:
    from mla_core.analysis.capture import AttentionCapture
    from mla_core.loading.weights import WeightsSource
    from mla_core.models.gpt2 import GPT2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('error: ...') and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# --- cache ------------------------------------------------------------------------------


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="KV cache size per token for MHA, GQA, MQA and MLA",
        description="Bytes of KV cache per token (and at a context length) for each attention "
        "kind a model config supports.",
    )
    p.add_argument("--config", required=True, help="built-in config name or a config.json path")
    p.add_argument("--dtype-bytes", type=int, default=2, help="bytes per cached number (default 2)")
    p.add_argument("--context", type=int, default=None, help="also report the cache at T tokens")
    p.add_argument("--gqa-groups", type=int, default=None, help="also report GQA with N groups")
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="with --context: how many sequences fit in G GB (10^9 bytes) of cache memory",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from mla_core.analysis.cache_size import KIND_LABELS, cache_report, resolve_dims

    dims = resolve_dims(args.config)
    report = cache_report(dims, args.dtype_bytes, args.context, args.gqa_groups, args.memory_gb)
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['config']}: {dims.n_layers} layers, {dims.n_heads} heads, head dim "
        f"{dims.head_dim}, {args.dtype_bytes} bytes per number"
    )
    header = f"{'kind':<10}{'numbers/token/layer':>22}{'bytes/token':>16}{'x smaller':>11}"
    if args.context is not None:
        header += f"{'at ' + format(args.context, ',') + ' tokens':>22}"
    if args.memory_gb is not None:
        header += f"{'seqs in ' + format(args.memory_gb, 'g') + ' GB':>18}"
    print(header)
    for kind, nbytes in report["bytes_per_token"].items():
        label = KIND_LABELS[kind] + (f"-{report['gqa_groups']}" if kind == "gqa" else "")
        line = (
            f"{label:<10}{report['elements_per_token_per_layer'][kind]:>22,}"
            f"{nbytes:>16,}{report['ratios'][kind]:>10.2f}x"
        )
        if args.context is not None:
            line += f"{_human_bytes(report['cache_bytes'][kind]):>22}"
        if args.memory_gb is not None:
            line += f"{report['sequences_that_fit'][kind]:>18,}"
        print(line)
    return 0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1000
    raise AssertionError("unreachable")


# --- predict and attention (GPT-2) -------------------------------------------------------


def _add_model_source_args(p: argparse.ArgumentParser) -> None:
    """--weights / --download / --device: where the model comes from and where it runs."""
    p.add_argument(
        "--weights",
        metavar="DIR",
        default=None,
        help="folder with config.json + model.safetensors (else $MLA_GPT2_WEIGHTS, the Hugging "
        "Face cache, --download, then the embedded model)",
    )
    p.add_argument(
        "--download", action="store_true", help="allow downloading gpt2 with huggingface_hub"
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available"
    )


def _load_gpt2(args: argparse.Namespace) -> tuple[GPT2, WeightsSource]:
    from mla_core.loading.weights import load_gpt2

    return load_gpt2(args.weights, download=args.download, device=args.device)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="GPT-2's most likely next tokens for a prompt",
        description="Run a prompt through GPT-2 and print the top-k next tokens.",
    )
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--top-k", type=int, default=10, help="how many next tokens (default 10)")
    _add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from mla_core.analysis.capture import prompt_token_ids, top_next_tokens
    from mla_core.loading.tokenizer import gpt2_tokenizer

    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k} must be >= 1")
    model, source = _load_gpt2(args)
    ids = prompt_token_ids(args.prompt, model.config)
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.wte.weight.device))[0, -1]
    top = top_next_tokens(logits, args.top_k)
    tokens = gpt2_tokenizer().display_tokens(ids)
    if args.json:
        print_json(
            {
                "prompt": args.prompt,
                "token_ids": ids,
                "tokens": tokens,
                "weights": source.as_dict(),
                "top_k": [vars(t) for t in top],
            }
        )
        return 0
    print(f"weights: {source.description}")
    print(f"tokens ({len(ids)}): {' '.join(tokens)}")
    print(f"{'rank':>4}  {'token':<16}{'id':>7}{'probability':>13}")
    for rank, t in enumerate(top, start=1):
        print(f"{rank:>4}  {t.token:<16}{t.token_id:>7}{t.probability:>13.4f}")
    return 0


ATTENTION_MODELS = ("gpt2", "mla")  # `--model` choices; each needs a branch in _attention_capture


def _add_attention(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="one head's queries, keys, values, scores and attention pattern for a prompt",
        description="Capture one attention head on a prompt: print its pattern, or save q, k, "
        "v, scores, masked scores, pattern and z with the tokens to an .npz file.",
    )
    p.add_argument("--prompt", required=True, help="the text to run")
    p.add_argument("--layer", type=int, required=True, help="layer index, from 0")
    p.add_argument("--head", type=int, required=True, help="head index, from 0")
    p.add_argument("--model", choices=ATTENTION_MODELS, default="gpt2", help="default gpt2")
    p.add_argument(
        "--rank", type=int, default=None, help="--model mla: the latent rank r (1..n_embd)"
    )
    p.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="put <|endoftext|> in front, as TransformerLens does (default: --bos)",
    )
    p.add_argument("--out", metavar="FILE.npz", default=None, help="save the head's tensors")
    _add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_attention)


def _attention_capture(args: argparse.Namespace) -> tuple[AttentionCapture, dict]:
    """Capture every head of the chosen model; also return where its weights came from."""
    from mla_core.analysis.capture import capture_attention

    if args.model == "gpt2":
        if args.layer < 0 or args.head < 0:
            raise UserError(f"--layer {args.layer} / --head {args.head} must be >= 0")
        model, source = _load_gpt2(args)
        # Check the head before the (slower) forward pass.
        if args.layer >= model.config.n_layer or args.head >= model.config.n_head:
            raise UserError(_head_range_error(args, model.config.n_layer, model.config.n_head))
        return capture_attention(model, args.prompt, bos=args.bos), source.as_dict()
    if args.model == "mla":
        return _mla_attention_capture(args)
    raise UserError(f"--model {args.model!r}; allowed: {', '.join(ATTENTION_MODELS)}")


def _head_range_error(args: argparse.Namespace, n_layers: int, n_heads: int) -> str:
    if not 0 <= args.layer < n_layers:
        return f"--layer {args.layer} is out of range; this model has layers 0..{n_layers - 1}"
    return f"--head {args.head} is out of range; this model has heads 0..{n_heads - 1}"


def _run_attention(args: argparse.Namespace) -> int:
    import numpy as np

    capture, weights = _attention_capture(args)
    head = capture.head(args.layer, args.head)
    if args.out is not None:
        _save_npz(args.out, head, capture, args, weights)
    if args.json:
        print_json(
            {
                "prompt": capture.prompt,
                "model": args.model,
                "layer": args.layer,
                "head": args.head,
                "bos": capture.bos,
                "weights": weights,
                "token_ids": capture.token_ids,
                "tokens": capture.tokens,
                **{
                    name: np.asarray(head[name]).tolist()
                    for name in ("q", "k", "v", "scores", "pattern", "z")
                },
                "out": args.out,
            }
        )
        return 0
    print(f"weights: {weights['description']}")
    print(f"layer {args.layer}, head {args.head}: attention pattern (row = query, column = key)")
    width = max(6, *(len(t) for t in capture.tokens)) + 1
    print(" " * width + "".join(f"{t[:6]:>7}" for t in capture.tokens))
    for token, row in zip(capture.tokens, head["pattern"], strict=True):
        print(f"{token:<{width}}" + "".join(f"{p:>7.3f}" for p in row))
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _save_npz(
    path: str, head: dict, capture: AttentionCapture, args: argparse.Namespace, weights: dict
) -> None:
    from pathlib import Path

    import numpy as np

    from mla_core.atomic import write_npz_atomically

    target = Path(path)
    if not target.parent.is_dir():
        raise UserError(f"--out {path!r}: the folder {str(target.parent)!r} does not exist")
    meta = {
        "prompt": np.array(capture.prompt),
        "model": np.array(args.model),
        "layer": np.array(args.layer),
        "head": np.array(args.head),
        "bos": np.array(capture.bos),
        "weights_description": np.array(weights["description"]),
        "weights_sha256": np.array(weights["sha256"]),
    }
    write_npz_atomically(target, {**head, **meta})


# --- bench ------------------------------------------------------------------------------


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks (decode: attention decode step against the roofline)",
        description="Speed benchmarks; each one prints a table and writes JSON and a plot.",
    )
    actions = p.add_subparsers(
        dest="bench", required=True, parser_class=OneLineArgumentParser, metavar="{decode}"
    )
    d = actions.add_parser(
        "decode",
        help="one decode step of MHA, GQA, MQA and MLA at DeepSeek-V3 widths vs the roofline",
        description="Time one decode step of one attention layer (DeepSeek-V3 widths) for MHA, "
        "GQA-8, MQA, naive and absorbed MLA, and compare each with this machine's roofline "
        "floor max(bytes / bandwidth, FLOPs / matmul rate).",
    )
    d.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    d.add_argument(
        "--dtype", nargs="+", default=None, help="float32 and/or bfloat16 (default float32)"
    )
    d.add_argument(
        "--contexts",
        nargs="+",
        default=None,
        help="cache lengths, e.g. 1k 8k 16384 (default 1k..32k)",
    )
    d.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default 1 4)")
    d.add_argument("--variants", nargs="+", default=None, help="subset of the five variants")
    d.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run kernels through torch.compile (default: on for cpu, off for cuda)",
    )
    d.add_argument("--quick", action="store_true", help="contexts 1k 4k, batch 1 2, short timings")
    d.add_argument(
        "--json", default=None, help="JSON output (default bench/results/decode_<device>.json)"
    )
    d.add_argument("--plot", default=None, help="PNG output (default: the JSON path with .png)")
    d.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    d.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time (default) or, with --threads 1, the thread's CPU time (shared machines)",
    )
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    d.set_defaults(handler=_run_bench_decode)


def _run_bench_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mla_core.bench.decode import (
        DEFAULT_CONTEXTS,
        QUICK_CONTEXTS,
        format_table,
        parse_contexts,
        run_decode_benchmark,
        write_json,
        write_plot,
    )
    from mla_core.bench.decode_attention import VARIANTS

    if args.contexts is not None:
        contexts = parse_contexts(args.contexts)
    else:
        contexts = list(QUICK_CONTEXTS if args.quick else DEFAULT_CONTEXTS)
    batches = args.batches or ([1, 2] if args.quick else [1, 4])
    report = run_decode_benchmark(
        device=args.device,
        dtypes=args.dtype or ["float32"],
        contexts=contexts,
        batches=batches,
        variants=args.variants or list(VARIANTS),
        compile_kernels=args.compile,
        quick=args.quick,
        progress=not args.no_progress,
        threads=args.threads,
        clock=args.clock,
    )
    json_path = Path(args.json or f"bench/results/decode_{args.device}.json")
    plot_path = Path(args.plot) if args.plot else json_path.with_suffix(".png")
    write_json(report, json_path)
    write_plot(report, plot_path)
    print(format_table(report))
    print(f"wrote {json_path} and {plot_path}")
    return 0


# --- MLA built from GPT-2: attention --model mla, convert, sweep ---------------------------


def _load_converted_gpt2(args: argparse.Namespace, rank: int | None) -> tuple[GPT2, GPT2, dict]:
    """The GPT-2 of --weights (etc.), it converted to MLA at `rank`, and its weights source."""
    from mla_core.models.gpt2_to_mla import check_rank, convert_gpt2

    if rank is None:
        raise UserError("--rank R is required with an MLA model (1..n_embd, e.g. --rank 64)")
    model, source = _load_gpt2(args)
    check_rank(rank, model.config)
    return model, convert_gpt2(model, rank), {**source.as_dict(), "mla_rank": rank}


def _mla_attention_capture(args: argparse.Namespace) -> tuple[AttentionCapture, dict]:
    from mla_core.analysis.latent_heads import capture_latent_attention

    if args.layer < 0 or args.head < 0:
        raise UserError(f"--layer {args.layer} / --head {args.head} must be >= 0")
    _, model, weights = _load_converted_gpt2(args, args.rank)
    if args.layer >= model.config.n_layer or args.head >= model.config.n_head:
        raise UserError(_head_range_error(args, model.config.n_layer, model.config.n_head))
    weights["description"] += f", converted to MLA at rank {args.rank}"
    return capture_latent_attention(model, args.prompt, bos=args.bos), weights


CHECK_PROMPT = " The American flag is red, white, and"


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn GPT-2's keys and values into one rank-r latent (MLA) and report the cost",
        description="Factor every layer's stacked key/value weights [W_K; W_V] by SVD into "
        "W_DKV (n_embd -> r) and W_UK, W_UV (r -> heads x head_dim); print the cache saving "
        "and how far the converted model is from GPT-2; optionally save the converted tensors.",
    )
    p.add_argument("--rank", type=int, required=True, help="latent rank r, 1..n_embd")
    p.add_argument("--out", metavar="DIR", default=None, help="save the converted attention")
    _add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    import torch

    from mla_core.analysis.capture import prompt_token_ids
    from mla_core.loading.tokenizer import gpt2_tokenizer
    from mla_core.models.gpt2_to_mla import cache_bytes_per_token, kv_spectrum, save_converted

    original, converted, weights = _load_converted_gpt2(args, args.rank)
    config = converted.config
    energy = [kv_spectrum(block.attn).energy_kept(args.rank) for block in original.h]
    ids = prompt_token_ids(CHECK_PROMPT, config)
    with torch.no_grad():
        tokens = torch.tensor([ids], device=original.wte.weight.device)
        reference, mla = original(tokens)[0, -1], converted(tokens)[0, -1]
    tokenizer = gpt2_tokenizer()
    sizes = cache_bytes_per_token(config, args.rank, dtype_bytes=2)
    report = {
        "weights": weights,
        "rank": args.rank,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "cache_bytes_per_token_fp16": sizes,
        "cache_fraction_of_mha": sizes["mla"] / sizes["mha"],
        "kv_weight_energy_kept_per_layer": energy,
        "check_prompt": CHECK_PROMPT,
        "check_max_abs_logit_diff": float((mla - reference).abs().max()),
        "check_top1_gpt2": tokenizer.display_token(int(reference.argmax())),
        "check_top1_mla": tokenizer.display_token(int(mla.argmax())),
        "out": args.out,
    }
    if args.out is not None:
        save_converted(converted, args.out, weights)
    if args.json:
        print_json(report)
        return 0
    print(f"weights: {weights['description']}")
    print(
        f"{config.n_layer} layers x {config.n_head} heads, n_embd {config.n_embd}; "
        f"latent rank r = {args.rank}"
    )
    print(
        f"KV cache per token (2 bytes/number): MHA {sizes['mha']:,} B, MLA {sizes['mla']:,} B "
        f"({report['cache_fraction_of_mha']:.1%} of MHA, "
        f"{sizes['mha'] / sizes['mla']:.1f}x smaller)"
    )
    print(
        f"[W_K; W_V] energy kept: min {min(energy):.2%}, mean {sum(energy) / len(energy):.2%} "
        "over layers"
    )
    print(
        f"check {CHECK_PROMPT!r}: max |logit - GPT-2 logit| = "
        f"{report['check_max_abs_logit_diff']:.3g}; next token GPT-2 "
        f"{report['check_top1_gpt2']!r}, MLA {report['check_top1_mla']!r}"
    )
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from mla_core.analysis.mla_sweep import DEFAULT_OUT, DEFAULT_RANKS

    p = sub.add_parser(
        "sweep",
        help="MLA-from-GPT-2 quality against cache size over a range of latent ranks (JSON)",
        description="Convert GPT-2 to MLA at each rank and measure cache bytes per token, "
        "attention-pattern KL, top-1 agreement and perplexity on held-out text.",
    )
    p.add_argument(
        "--ranks",
        default=",".join(map(str, DEFAULT_RANKS)),
        help="comma-separated ranks, clipped to n_embd (default %(default)s)",
    )
    p.add_argument(
        "--text", metavar="FILE", default=None, help="held-out English text (default: shipped)"
    )
    p.add_argument("--window", type=int, default=128, help="tokens per window (default 128)")
    p.add_argument("--max-windows", type=int, default=None, help="use at most N windows")
    p.add_argument("--out", metavar="FILE.json", default=str(DEFAULT_OUT), help="JSON to write")
    p.add_argument("--note", default=None, help="a line on the model, kept in the JSON")
    _add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mla_core.analysis import mla_sweep

    try:
        ranks = [int(r) for r in args.ranks.split(",") if r.strip()]
    except ValueError:
        raise UserError(f"--ranks {args.ranks!r} must be comma-separated integers") from None
    if not ranks:
        raise UserError("--ranks is empty; give e.g. --ranks 8,64,768")
    if args.text is None:
        text_path, text_source = mla_sweep.HELDOUT_SAMPLE, mla_sweep.HELDOUT_SAMPLE_SOURCE
    else:
        text_path, text_source = Path(args.text), f"--text {args.text}"
    if not text_path.is_file():
        raise UserError(f"--text {str(text_path)!r} does not exist")
    if args.max_windows is not None and args.max_windows < 1:
        raise UserError(f"--max-windows {args.max_windows} must be >= 1")
    model, source = _load_gpt2(args)
    text = text_path.read_text(encoding="utf-8")
    result = mla_sweep.rank_sweep(model, text, ranks, args.window, args.max_windows)
    result["model"]["weights"] = source.as_dict()
    if args.note:
        result["model"]["note"] = args.note
    result["text"].update(mla_sweep.text_provenance(text_path, text_source))
    mla_sweep.write_json_atomically(result, Path(args.out))
    if args.json:
        print_json(result)
        return 0
    print(f"weights: {source.description}")
    print(f"text: {text_source}")
    print(mla_sweep.format_table(result))
    print(f"wrote {args.out}")
    return 0


# --- heads -----------------------------------------------------------------------------


def _add_heads(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heads",
        help="score every attention head: previous-token, first-token, duplicate, induction",
        description="Measure what each head attends to (see mla_core.analysis.head_scores) and "
        "name the most typical head of each kind.",
    )
    _add_model_source_args(p)
    p.add_argument("--repeat-tokens", type=int, default=40, help="random tokens per half")
    p.add_argument("--sequences", type=int, default=4, help="repeated random sequences")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sequences")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_heads)


def _run_heads(args: argparse.Namespace) -> int:
    from mla_core.analysis.head_scores import format_table, measure_head_scores, typical_heads

    model, source = _load_gpt2(args)
    scores = measure_head_scores(model, args.repeat_tokens, args.sequences, args.seed)
    picks = typical_heads(scores)
    if args.json:
        print_json(
            {
                "weights": source.as_dict(),
                **scores.as_dict(),
                "typical": {
                    kind: {"layer": p.layer, "head": p.head, "score": round(p.score, 4)}
                    for kind, p in picks.items()
                },
            }
        )
        return 0
    print(f"weights: {source.description}")
    print(format_table(scores))
    return 0


# --- deepseek-attention: one MLA head of a DeepSeek layer ------------------------------------


def _add_deepseek_attention(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deepseek-attention",
        help="one MLA head of a DeepSeek layer: latents, RoPE key/query, both score paths",
        description="Load one layer's MLA weights from a Hugging Face DeepSeek checkpoint "
        "(safetensors) or use the small built-in DeepSeek-style model, run one head on "
        "hidden states and save c_KV, k_rope, W_DKV, W_UK, W_UV, q_latent and the naive and "
        "absorbed scores to an .npz file.",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="a DeepSeek .safetensors file or folder (default: the small seeded model)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a built-in DeepSeek config (e.g. deepseek-v3) or a config.json path, used "
        "instead of the checkpoint's config.json; for the small model: its config "
        "(default deepseek-tiny)",
    )
    p.add_argument("--layer", type=int, default=0, help="layer index, from 0 (default 0)")
    p.add_argument("--head", type=int, default=0, help="head index, from 0 (default 0)")
    p.add_argument("--tokens", type=int, default=8, help="sequence length (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model / hidden states")
    p.add_argument("--out", metavar="FILE.npz", default=None, help="save the head's arrays")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_run_deepseek_attention)


def _run_deepseek_attention(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np
    import torch

    from mla_core.models.configs import (
        DEEPSEEK_TINY,
        DEEPSEEK_TINY_LITE,
        DeepSeekConfig,
        builtin_config,
        deepseek_config_from_hf,
        load_config_json,
    )

    if args.tokens < 1:
        raise UserError(f"--tokens {args.tokens} must be >= 1")
    config = None
    if args.config is not None:
        small = {c.name: c for c in (DEEPSEEK_TINY, DEEPSEEK_TINY_LITE)}
        if args.config.endswith(".json"):
            data = load_config_json(args.config)
            config = deepseek_config_from_hf(data, name=args.config)
        else:
            config = small.get(args.config) or builtin_config(args.config)
        if not isinstance(config, DeepSeekConfig):
            raise UserError(f"--config {args.config!r} is not a DeepSeek config")
    if args.checkpoint is None:
        from mla_core.analysis.latent_heads import deepseek_latent_head, deepseek_layer_input
        from mla_core.models.deepseek import DeepSeekModel

        config = config or DEEPSEEK_TINY
        if config.vocab_size * config.hidden_size > 50_000_000:
            raise UserError(
                f"--config {config.name!r} is too big to build with random weights here; "
                "pass --checkpoint with its safetensors"
            )
        model = DeepSeekModel(config, seed=args.seed)
        if not 0 <= args.layer < config.n_layers:
            raise UserError(f"--layer {args.layer} must be in 0..{config.n_layers - 1}")
        generator = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, config.vocab_size, (args.tokens,), generator=generator).tolist()
        hidden = deepseek_layer_input(model, ids, args.layer)
        attn, source = model.blocks[args.layer].attn, f"small model {config.name}, seed {args.seed}"
    else:
        from mla_core.analysis.latent_heads import deepseek_latent_head
        from mla_core.loading.deepseek_weights import load_attention_layer

        attn = load_attention_layer(args.checkpoint, args.layer, config)
        config = attn.config
        # No embeddings are loaded: the layer runs on seeded Gaussian hidden states.
        generator = torch.Generator().manual_seed(args.seed)
        hidden = torch.randn(args.tokens, config.hidden_size, generator=generator)
        source = f"{args.checkpoint} layer {args.layer}, Gaussian hidden states (seed {args.seed})"
    scene = deepseek_latent_head(attn, hidden, args.head)
    arrays = {
        f.name: getattr(scene, f.name)
        for f in dataclasses.fields(scene)
        if isinstance(getattr(scene, f.name), np.ndarray)
    }
    if args.out is not None:
        from pathlib import Path

        from mla_core.analysis.latent_heads import write_npz_atomically

        write_npz_atomically(Path(args.out), {**arrays, "source": np.array(source)})
    gap = float(np.abs(scene.scores_absorbed - scene.scores_naive).max())
    summary = {
        "source": source,
        "config": config.name,
        "layer": args.layer,
        "head": args.head,
        "softmax_scale": scene.softmax_scale,
        "shapes": {name: list(a.shape) for name, a in arrays.items()},
        "max_abs_naive_minus_absorbed_score": gap,
        "out": args.out,
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"{source}: head {args.head}, softmax scale {scene.softmax_scale:.6g}")
    for name, shape in summary["shapes"].items():
        print(f"  {name:<17}{' x '.join(map(str, shape))}")
    print(f"max |naive score - absorbed score| = {gap:.3g}")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


# --- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m mla_core",
        description="Models, caches and scene data behind the MLA explainer video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    _add_cache(sub)
    _add_predict(sub)
    _add_attention(sub)
    _add_convert(sub)
    _add_sweep(sub)
    _add_deepseek_attention(sub)
    _add_bench(sub)
    _add_heads(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
