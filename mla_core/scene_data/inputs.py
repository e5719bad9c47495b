"""The video parameters, resolved once: model, tokenizer, weights, device and provenance.

`resolve_inputs(params)` turns the parameters into one `SceneInputs` object, and every data
function receives that object: the weights folder is found and hashed once, the device is
checked once, the model is loaded once per process (on first use), and the provenance that
goes into every manifest is written in one place. The data flows downward from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from mla_core.errors import UserError
from mla_core.loading.weights import (
    CONFIG_FILE,
    WeightsSource,
    check_device,
    load_gpt2_from_dir,
    read_gpt2_config,
    resolve_weights,
    sha256_of_file,
)
from mla_core.scene_data.params import MAX_PROMPT_TOKENS, RENDER_ONLY_PARAMS, VideoParams

if TYPE_CHECKING:  # the model (and torch) load on first use: cached data needs neither
    from mla_core.models.gpt2 import GPT2


@dataclass(frozen=True)
class SceneInputs:
    """What every data function starts from. `model` and `tokenizer` load on first use."""

    params: VideoParams
    weights: WeightsSource  # the GPT-2 folder, how it was found, its safetensors' sha256
    config_sha256: str  # of its config.json: the same weights with another config differ
    device: str  # "cpu" or "cuda", checked

    @cached_property
    def model(self) -> GPT2:
        return load_gpt2_from_dir(self.weights.path, device=self.device)

    @property
    def latent_rank(self) -> int:
        """The width of the latent c_KV in the MLA scenes: the `latent_rank` parameter, or a
        quarter of the model width when it is 0; a rank above n_embd is a UserError."""
        n_embd = self.model.config.n_embd
        rank = self.params.latent_rank or max(1, n_embd // 4)
        if rank > n_embd:
            raise UserError(
                f"latent_rank={rank} is not allowed for this model: use 1..{n_embd} "
                f"(its width n_embd), or 0 for n_embd / 4"
            )
        return rank

    @property
    def tokenizer(self):
        from mla_core.loading.tokenizer import gpt2_tokenizer

        return gpt2_tokenizer()  # built once per process

    @property
    def provenance(self) -> dict[str, Any]:
        """Which model the GPT-2 scenes use: its description, sha256 and device."""
        provenance = {
            "model": self.weights.description,
            "model_kind": self.weights.kind,
            "model_sha256": self.weights.sha256,
            "device": self.device,
        }
        if self.weights.repo_id:
            provenance["model_repo"] = self.weights.repo_id
        return provenance

    def prompt_provenance(self, token_ids: list[int], **more: Any) -> dict[str, Any]:
        """The model's provenance plus the prompt and its token ids (and any `more`)."""
        return {**self.provenance, "prompt": self.params.prompt, "token_ids": token_ids, **more}

    @property
    def model_caption(self) -> str:
        """One short line for a scene's caption: which model drew the picture.

        The demo model says so; OpenAI's GPT-2 from the hub (cached or just downloaded) is
        named by its repository; any other folder by its name. All but the demo show the
        start of the weights' sha256, as the manifest does in full."""
        sha = self.weights.sha256[:12]
        if self.weights.kind == "embedded":
            return "demo model trained by this project, not OpenAI's GPT-2 small"
        if self.weights.from_hub:
            return f"model: OpenAI's GPT-2 ({self.weights.repo_id}), sha256 {sha}"
        return f"model: {self.weights.path.name}, sha256 {sha}"

    def cache_key(self) -> dict[str, Any]:
        """Everything a data function's result can depend on (JSON-ready); the render
        quality and the voice are left out: no data depends on them."""
        params = {k: v for k, v in self.params.as_dict().items() if k not in RENDER_ONLY_PARAMS}
        return {
            "params": params,
            "weights_sha256": self.weights.sha256,
            "config_sha256": self.config_sha256,
            "device": self.device,
        }


@cache
def resolve_inputs(params: VideoParams) -> SceneInputs:
    """Resolve the parameters once per process (the same params give the same object);
    a prompt too long for the frame or for the model's context is a UserError."""
    weights = resolve_weights(params.weights, flag="weights")  # "auto": once per render.py
    inputs = SceneInputs(
        params=params,
        weights=weights,
        config_sha256=sha256_of_file(weights.path / CONFIG_FILE),
        device=check_device(params.device),
    )
    check_prompt_length(inputs)
    return inputs


def check_prompt_length(inputs: SceneInputs) -> None:
    n_tokens = len(inputs.tokenizer.encode(inputs.params.prompt))
    if n_tokens > MAX_PROMPT_TOKENS:
        raise UserError(
            f"prompt is {n_tokens} tokens long; at most {MAX_PROMPT_TOKENS} fit in the frame"
        )
    n_ctx = read_gpt2_config(inputs.weights.path).n_ctx
    needed = 1 + n_tokens + inputs.params.new_tokens  # <|endoftext|>, prompt, generated
    if needed > n_ctx:
        raise UserError(
            f"prompt ({n_tokens} tokens) plus new_tokens={inputs.params.new_tokens} needs "
            f"{needed} positions; this model's context holds {n_ctx}"
        )
