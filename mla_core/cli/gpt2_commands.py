"""The GPT-2 commands: `predict` (next tokens), `attention` (one head), `heads` (head scores)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mla_core.atomic import check_output_file
from mla_core.cli.args import (
    add_model_source_args,
    gpt2_from_args,
    gpt2_or_deepseek_from_args,
    print_json,
)
from mla_core.cli.mla_commands import mla_attention_capture
from mla_core.errors import UserError, check_layer_head

if TYPE_CHECKING:
    from mla_core.analysis.capture import AttentionCapture


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="GPT-2's most likely next tokens for a prompt",
        description="Run a prompt through GPT-2 and print the top-k next tokens.",
    )
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--top-k", type=int, default=10, help="how many next tokens (default 10)")
    add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from mla_core.analysis.capture import prompt_token_ids, top_next_tokens
    from mla_core.loading.tokenizer import gpt2_tokenizer

    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k} must be >= 1")
    model, source = gpt2_from_args(args)
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


def add_attention(sub: argparse._SubParsersAction) -> None:
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
    add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_attention)


def _attention_capture(args: argparse.Namespace) -> tuple[AttentionCapture, dict]:
    """Capture every head of the chosen model; also return where its weights came from."""
    from mla_core.analysis.capture import capture_attention

    if args.model == "gpt2":
        if args.layer < 0 or args.head < 0:
            raise UserError(f"--layer {args.layer} / --head {args.head} must be >= 0")
        model, source = gpt2_from_args(args)
        # Check the head before the (slower) forward pass.
        check_layer_head(args.layer, args.head, model.config.n_layer, model.config.n_head)
        return capture_attention(model, args.prompt, bos=args.bos), source.as_dict()
    if args.model == "mla":
        return mla_attention_capture(args)
    raise UserError(f"--model {args.model!r}; allowed: {', '.join(ATTENTION_MODELS)}")


def _run_attention(args: argparse.Namespace) -> int:
    import numpy as np

    if args.out is not None:
        check_output_file(args.out, "--out")
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


def add_heads(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heads",
        help="score every attention head: previous-token, first-token, duplicate, induction",
        description="Measure what each head attends to (see mla_core.analysis.head_scores) and "
        "name the most typical head of each kind. --weights may also name a DeepSeek-V3 folder "
        "(e.g. assets/models/demo-mla): its MLA heads are scored.",
    )
    add_model_source_args(p)
    p.add_argument("--repeat-tokens", type=int, default=40, help="random tokens per half")
    p.add_argument("--sequences", type=int, default=4, help="repeated random sequences")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sequences")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_heads)


def _run_heads(args: argparse.Namespace) -> int:
    from mla_core.analysis.head_scores import format_table, measure_head_scores, typical_heads

    model, source = gpt2_or_deepseek_from_args(args)
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
