"""The MLA commands: `convert` and `sweep` (MLA built from GPT-2), `deepseek-attention`.

Also the MLA branch of `attention --model mla`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mla_core.atomic import check_output_file, check_output_folder
from mla_core.cli.args import (
    add_model_source_args,
    gpt2_from_args,
    print_json,
)
from mla_core.errors import UserError, check_layer_head

if TYPE_CHECKING:
    from mla_core.analysis.capture import AttentionCapture
    from mla_core.models.gpt2 import GPT2


def converted_gpt2_from_args(args: argparse.Namespace, rank: int | None) -> tuple[GPT2, GPT2, dict]:
    """The GPT-2 of --weights (etc.), it converted to MLA at `rank`, and its weights source."""
    from mla_core.models.gpt2_to_mla import check_rank, convert_gpt2

    if rank is None:
        raise UserError("--rank R is required with an MLA model (1..n_embd, e.g. --rank 64)")
    model, source = gpt2_from_args(args)
    check_rank(rank, model.config)
    return model, convert_gpt2(model, rank), {**source.as_dict(), "mla_rank": rank}


def mla_attention_capture(args: argparse.Namespace) -> tuple[AttentionCapture, dict]:
    from mla_core.analysis.latent_heads import capture_latent_attention

    if args.layer < 0 or args.head < 0:
        raise UserError(f"--layer {args.layer} / --head {args.head} must be >= 0")
    _, model, weights = converted_gpt2_from_args(args, args.rank)
    check_layer_head(args.layer, args.head, model.config.n_layer, model.config.n_head)
    weights["description"] += f", converted to MLA at rank {args.rank}"
    return capture_latent_attention(model, args.prompt, bos=args.bos), weights


CHECK_PROMPT = " The American flag is red, white, and"


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn GPT-2's keys and values into one rank-r latent (MLA) and report the cost",
        description="Factor every layer's stacked key/value weights [W_K; W_V] by SVD into "
        "W_DKV (n_embd -> r) and W_UK, W_UV (r -> heads x head_dim); print the cache saving "
        "and how far the converted model is from GPT-2; optionally save the converted tensors.",
    )
    p.add_argument("--rank", type=int, required=True, help="latent rank r, 1..n_embd")
    p.add_argument("--out", metavar="DIR", default=None, help="save the converted attention")
    add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    import torch

    if args.out is not None:
        check_output_folder(args.out, "--out")

    from mla_core.analysis.capture import prompt_token_ids
    from mla_core.loading.tokenizer import gpt2_tokenizer
    from mla_core.models.gpt2_to_mla import cache_bytes_per_token, kv_spectrum, save_converted

    original, converted, weights = converted_gpt2_from_args(args, args.rank)
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


def add_sweep(sub: argparse._SubParsersAction) -> None:
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
    add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    check_output_file(args.out, "--out")

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
    model, source = gpt2_from_args(args)
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


# Every head's T x T scores are kept (naive and absorbed): 1,024 tokens at DeepSeek-V3's 128
# heads is 0.5 GB per float32 array, well inside a 24 GB machine.
MAX_DEEPSEEK_TOKENS = 1024


def add_deepseek_attention(sub: argparse._SubParsersAction) -> None:
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

    if args.out is not None:
        check_output_file(args.out, "--out")

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

    if not 1 <= args.tokens <= MAX_DEEPSEEK_TOKENS:
        raise UserError(
            f"--tokens {args.tokens} is not allowed: use 1..{MAX_DEEPSEEK_TOKENS} (the command "
            "keeps every head's tokens x tokens scores in memory)"
        )
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
