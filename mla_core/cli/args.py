"""What every command shares: the one-line argument parser and the model-source flags.

Kept small and free of torch, so that `render.py` and `python -m mla_core.train` can import
`OneLineArgumentParser` without loading the rest of the command line.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mla_core.loading.weights import WeightsSource
    from mla_core.models.deepseek import DeepSeekModel
    from mla_core.models.gpt2 import GPT2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('error: ...') and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def print_json(obj: object) -> None:
    """A command's --json output: one indented JSON object."""
    print(json.dumps(obj, indent=2, sort_keys=False))


def add_model_source_args(p: argparse.ArgumentParser) -> None:
    """--weights / --download / --no-download / --device: where the model comes from and
    where it runs."""
    p.add_argument(
        "--weights",
        metavar="SPEC",
        default="auto",
        help='"auto" (default: $MLA_GPT2_WEIGHTS, the Hugging Face cache, a download of '
        'openai-community/gpt2, then the embedded demo model), "demo" (the embedded demo '
        "model), or a folder with config.json + model.safetensors",
    )
    network = p.add_mutually_exclusive_group()
    network.add_argument(
        "--download",
        action="store_true",
        help='like "auto", but a failed download is an error instead of using the demo model',
    )
    network.add_argument(
        "--no-download",
        action="store_true",
        help="never go to the network: the Hugging Face cache, else the demo model",
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available"
    )


def download_choice(args: argparse.Namespace) -> bool | None:
    """--download -> True, --no-download -> False, neither -> None (download if needed)."""
    if getattr(args, "no_download", False):
        return False
    return True if getattr(args, "download", False) else None


def gpt2_from_args(args: argparse.Namespace) -> tuple[GPT2, WeightsSource]:
    """The GPT-2 that --weights / --download / --device name, and where its weights came from."""
    from mla_core.loading.weights import load_gpt2

    return load_gpt2(args.weights, download=download_choice(args), device=args.device)


def gpt2_or_deepseek_from_args(
    args: argparse.Namespace,
) -> tuple[GPT2 | DeepSeekModel, WeightsSource]:
    """Like `gpt2_from_args`, but --weights DIR may also be a DeepSeek-V3 folder (its
    config.json says model_type "deepseek_v3"): then the DeepSeek-style model is loaded."""
    from pathlib import Path

    if args.weights is not None and (Path(args.weights) / "config.json").is_file():
        from mla_core.models.configs import load_config_json

        config = load_config_json(Path(args.weights) / "config.json")
        if config.get("model_type") == "deepseek_v3":
            from mla_core.loading.deepseek_folder import load_deepseek_model
            from mla_core.loading.weights import WeightsSource, check_device, verified_sha256

            model = load_deepseek_model(args.weights, device=check_device(args.device))
            path = Path(args.weights).resolve()
            description = f"--weights {path} (a DeepSeek-style MLA model, DeepSeek-V3 layout)"
            return model, WeightsSource("weights-arg", path, description, verified_sha256(path))
    return gpt2_from_args(args)
