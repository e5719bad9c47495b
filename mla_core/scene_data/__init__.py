"""Scene data: the arrays and numbers each scene draws, computed by mla_core and cached.

One module per scene, named after it: the scene `NextToken` lives in `scenes/next_token.py` and
draws what the function `next_token` in `mla_core/scene_data/next_token.py` returns, a
`SceneData` of kind "next_token". Nothing else registers a scene's data.

How a scene gets its data (`data_for_scene`):
1. `params.py`: the video parameters (video.toml, `render.py --set`);
2. `inputs.py`: those parameters resolved once into `SceneInputs` (model, tokenizer, weights
   and their sha256, device, provenance), which every data function receives;
3. `store.py`: the disk cache, keyed by the data kind, the code the data function runs (its
   import closure, `mla_core.code_version`) and everything in `SceneInputs.cache_key()`.

Nothing here imports Manim: `render.py data SCENE` prints a scene's data without rendering.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mla_core.code_version import code_version, defines_function, module_path
from mla_core.errors import UserError
from mla_core.names import scene_stem
from mla_core.scene_data.params import VideoParams
from mla_core.scene_data.store import DataCache, SceneData

if TYPE_CHECKING:  # the inputs import torch; `render.py list` and `--help` stay instant
    from mla_core.scene_data.inputs import SceneInputs

MANIFEST_DIR_ENV = "MLA_MANIFEST_DIR"  # set by render.py: where a scene records what it showed
# In that folder: the one-line message of bad input a scene met (a UserError in manim).
USER_ERROR_FILE = "user-error.txt"


def data_module(scene_name: str) -> str:
    return f"{__name__}.{scene_stem(scene_name)}"


def has_data(scene_name: str) -> bool:
    return module_path(data_module(scene_name)) is not None


def check_has_data(scene_name: str) -> None:
    """A UserError naming the missing file, unless the scene has a data module."""
    if not has_data(scene_name):
        raise UserError(
            f"no scene data for {scene_name!r}: there is no mla_core/scene_data/"
            f"{scene_stem(scene_name)}.py"
        )


def data_function(scene_name: str) -> Callable[[SceneInputs], SceneData]:
    """The data function of a scene: `<stem>` in `mla_core/scene_data/<stem>.py`."""
    check_has_data(scene_name)
    return getattr(importlib.import_module(data_module(scene_name)), scene_stem(scene_name))


def data_for_scene(
    scene_name: str, params: VideoParams | SceneInputs, data_cache: DataCache | None = None
) -> SceneData:
    """A scene's data, from the cache when nothing it depends on changed."""
    from mla_core.scene_data.inputs import SceneInputs, resolve_inputs

    check_has_data(scene_name)
    module = data_module(scene_name)
    inputs = params if isinstance(params, SceneInputs) else resolve_inputs(params)
    data_cache = data_cache or DataCache()
    key = inputs.cache_key()
    # A data module that reads a file (a benchmark's JSON) names it in `cache_inputs(inputs)`.
    # Otherwise the module is imported only to compute: most import torch, which a manim
    # process that finds its data in the cache never needs (about 1.5 s per process).
    if defines_function(module, "cache_inputs"):
        extra = importlib.import_module(module).cache_inputs
        key = {**key, "data_files": extra(inputs)}
    data = data_cache.get_or_compute(
        scene_stem(scene_name),
        code_version(module),
        key,
        lambda: data_function(scene_name)(inputs),
    )
    # The key holds the weights' sha256, not how they were found: data cached when GPT-2 was
    # downloaded is reused once it sits in the Hugging Face cache, and says so.
    provenance = data.meta.get("provenance")
    if isinstance(provenance, dict) and provenance.get("model_sha256") == inputs.weights.sha256:
        for stale in ("model", "model_kind", "model_repo"):
            provenance.pop(stale, None)
        provenance.update(inputs.provenance)
    return data


def computed_in_scene_process(scene_name: str) -> bool:
    """True for the scenes whose data is a measurement timed on one thread's CPU clock (a
    quick benchmark; `COMPUTED_IN_SCENE_PROCESS` in the data module): it takes long, other
    work beside it does not disturb it, so it runs in the scene's own manim process."""
    if not has_data(scene_name):
        return False
    module = importlib.import_module(data_module(scene_name))
    return bool(getattr(module, "COMPUTED_IN_SCENE_PROCESS", False))


def check_scene_data(scenes, params: VideoParams) -> None:
    """Compute (or read from the cache) the data of every scene (StoryScene entries) before
    manim starts: bad input (weights, heads, prompt, sizes) stops there in one line, and the
    manim processes find their data ready. Scenes that `computed_in_scene_process` are left
    to their manim process (render.py starts those first); their inputs are resolved here,
    so bad parameters still stop before manim starts."""
    from mla_core.scene_data.inputs import resolve_inputs

    names = [name for name in dict.fromkeys(scene.name for scene in scenes) if has_data(name)]
    if not names:
        return
    inputs = resolve_inputs(params)
    for name in names:
        if not computed_in_scene_process(name):
            data_for_scene(name, inputs)
