"""mla_core.scene_data: parameters, the disk cache, and the data the GPT-2 scenes draw.

The model data is checked against independent facts: the tokenizer's labels, the causal
softmax's invariants, a transformers forward of the same checkpoint (the oracle), and the
cache formula of mla_core.analysis.cache_size for the live cache's bytes at every step.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mla_core import scene_data as sd
from mla_core.code_version import code_version, defines_function, import_closure
from mla_core.errors import UserError
from mla_core.loading.weights import DEVICE_CHOICE_ENV
from mla_core.scene_data import params as sp
from mla_core.scene_data.store import CACHE_DIR_ENV, REPO, DataCache, SceneData

# --- parameters -----------------------------------------------------------------------------


def test_params_from_file_then_overrides(tmp_path):
    file = tmp_path / "video.toml"
    file.write_text('[video]\nprompt = " Hello"\ntop_k = 3\nshow_bos = true\n', encoding="utf-8")
    params = sp.load_params(file, {"top_k": "7", "heads": "5.1, 2.2"})
    assert params.prompt == " Hello" and params.top_k == 7 and params.show_bos is True
    assert sp.parse_heads(params.heads) == [(5, 1), (2, 2)]
    assert params.quality == sp.VideoParams().quality  # untouched default


def test_the_shipped_video_toml_loads_to_the_defaults():
    assert sp.load_params() == sp.VideoParams()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, "unknown parameter 'colour'; allowed: quality"),
        ({"top_k": "many"}, "want a whole number"),
        ({"show_bos": "maybe"}, "want true or false"),
        ({"heads": "5-1"}, "is not LAYER.HEAD"),
        ({"quality": "8k"}, "quality '8k' is not allowed"),
        ({"device": "tpu"}, "device 'tpu' is not allowed"),
        ({"prompt": ""}, "prompt is empty"),
    ],
)
def test_bad_parameters_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        sp.load_params(None, overrides)
    assert "\n" not in str(err.value)


def test_bad_parameter_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[video\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid TOML"):
        sp.load_params(bad)
    typed = tmp_path / "typed.toml"
    typed.write_text('[video]\ntop_k = "five"\n', encoding="utf-8")
    with pytest.raises(UserError, match="top_k='five' must be a int"):
        sp.load_params(typed)
    with pytest.raises(UserError, match="does not exist"):
        sp.load_params(tmp_path / "missing.toml")


def test_parse_overrides_needs_name_equals_value():
    assert sp.parse_overrides(["prompt= a=b"]) == {"prompt": " a=b"}
    with pytest.raises(UserError, match="NAME=VALUE"):
        sp.parse_overrides(["prompt"])


def test_params_travel_through_the_environment(monkeypatch):
    params = sp.load_params(None, {"prompt": " Yes", "new_tokens": "2"})
    monkeypatch.setenv(sp.PARAMS_ENV, params.to_json())
    assert sp.params_from_env() == params


# --- the disk cache ---------------------------------------------------------------------------


def counting_compute(calls: list):
    def compute() -> SceneData:
        calls.append(1)
        return SceneData(
            "demo", {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"label": "ok"}
        )

    return compute


def test_cache_hit_returns_the_same_data(tmp_path):
    cache, calls = DataCache(tmp_path), []
    first = cache.get_or_compute("demo", "v1", {"prompt": "a"}, counting_compute(calls))
    second = cache.get_or_compute("demo", "v1", {"prompt": "a"}, counting_compute(calls))
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first["x"], second["x"])
    assert second["label"] == "ok"
    cache.get_or_compute("demo", "v1", {"prompt": "b"}, counting_compute(calls))  # other inputs
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit_array"])
def test_corrupt_entry_is_detected_and_recomputed(tmp_path, damage):
    cache, calls = DataCache(tmp_path), []
    cache.get_or_compute("demo", "v1", {"p": 1}, counting_compute(calls))
    (entry,) = tmp_path.glob("demo-*.npz")
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "garbage":
        entry.write_bytes(b"not a zip file")
    else:  # a valid npz whose array no longer matches the stored checksum
        with np.load(entry) as npz:
            header, x = npz["__header__"], npz["x"]
        np.savez(entry.with_suffix(""), __header__=header, x=x + 1)
    data = cache.get_or_compute("demo", "v1", {"p": 1}, counting_compute(calls))
    assert len(calls) == 2 and cache.rejected == 1
    np.testing.assert_array_equal(data["x"], np.arange(6).reshape(2, 3))
    # the recomputed entry is good again
    cache.get_or_compute("demo", "v1", {"p": 1}, counting_compute(calls))
    assert len(calls) == 2


def test_stale_entry_after_a_code_change_is_recomputed(tmp_path):
    cache, calls = DataCache(tmp_path), []
    cache.get_or_compute("demo", "v1", {"p": 1}, counting_compute(calls))
    cache.get_or_compute("demo", "v2", {"p": 1}, counting_compute(calls))  # other code
    assert len(calls) == 2


def test_entry_filed_under_another_key_is_refused(tmp_path):
    cache, calls = DataCache(tmp_path), []
    cache.get_or_compute("demo", "v1", {"p": 1}, counting_compute(calls))
    entry_1 = cache.path("demo", cache.key("demo", "v1", {"p": 1}))
    entry_2 = cache.path("demo", cache.key("demo", "v1", {"p": 2}))
    entry_2.write_bytes(entry_1.read_bytes())  # p=1's data where p=2's belongs
    cache.get_or_compute("demo", "v1", {"p": 2}, counting_compute(calls))
    assert len(calls) == 2 and cache.rejected == 1


def make_package(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_code_version_follows_imports_and_changes_with_any_source_it_imports(tmp_path):
    make_package(
        tmp_path,
        {
            "mla_core/__init__.py": "",
            "mla_core/a.py": "from mla_core.b import f\n",
            "mla_core/b.py": "def f():\n    from mla_core.sub import c  # a local import\n",
            "mla_core/sub/__init__.py": "",
            "mla_core/sub/c.py": "X = 1\n",
            "mla_core/unrelated.py": "Y = 2\n",
        },
    )
    closure = {p.relative_to(tmp_path).as_posix() for p in import_closure("mla_core.a", tmp_path)}
    assert closure == {
        "mla_core/__init__.py",
        "mla_core/a.py",
        "mla_core/b.py",
        "mla_core/sub/__init__.py",
        "mla_core/sub/c.py",
    }
    before = code_version("mla_core.a", tmp_path)
    (tmp_path / "mla_core/unrelated.py").write_text("Y = 3\n")  # not imported: no change
    import_closure.cache_clear()
    assert code_version("mla_core.a", tmp_path) == before
    (tmp_path / "mla_core/sub/c.py").write_text("X = 2\n")  # imported two hops away
    import_closure.cache_clear()
    after = code_version("mla_core.a", tmp_path)
    assert after != before and len(after) == 16


def test_defines_function_reads_the_source_without_importing_it(tmp_path):
    make_package(
        tmp_path,
        {
            "mla_core/__init__.py": "",
            "mla_core/a.py": (
                "raise SystemExit('imported')\n"
                "def cache_inputs(inputs):\n    return {}\n"
                "class K:\n    def hidden(self):\n        pass\n"
                "other = 1\n"
            ),
        },
    )
    assert defines_function("mla_core.a", "cache_inputs", tmp_path)
    assert not defines_function("mla_core.a", "hidden", tmp_path)  # a method, not top-level
    assert not defines_function("mla_core.a", "other", tmp_path)  # a name, not a function
    assert not defines_function("mla_core.missing", "cache_inputs", tmp_path)
    assert defines_function("mla_core.scene_data.results", "cache_inputs")
    assert not defines_function("mla_core.scene_data.hook", "cache_inputs")


def test_a_scene_process_that_finds_its_data_cached_never_imports_torch(tmp_path):
    """A manim process starts with cached data (render.py computed it): with the device that
    render.py resolved in the environment, reading the data must not load torch (1.5 s per
    process). Computing it here fills the cache; a fresh interpreter then reads it."""
    env = {**os.environ, CACHE_DIR_ENV: str(tmp_path / "cache"), DEVICE_CHOICE_ENV: "cpu"}
    env["HF_HUB_OFFLINE"] = "1"  # "auto" weights: the cache or the demo model, no network
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    probe = (
        "import sys\n"
        "from mla_core.scene_data import data_for_scene\n"
        "from mla_core.scene_data.params import load_params\n"
        "import scenes.next_token, scenes.cache_size_per_token\n"
        "for name in ('NextToken', 'CacheSizePerToken'):\n"
        "    data_for_scene(name, load_params())\n"
        "print('torch' in sys.modules)\n"
    )
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True
    )
    first = run()  # cold cache: NextToken runs the model, so torch is imported
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "True"
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "False"


def test_each_scenes_data_key_covers_the_code_it_runs():
    closure = {p.name for p in import_closure("mla_core.scene_data.kv_cache_growth")}
    # the model, its cache, the cache formula and the head picker all decide the numbers
    assert {"gpt2.py", "kv_cache.py", "cache_size.py", "heads.py", "head_scores.py"} <= closure
    assert "next_token.py" not in closure  # another scene's edit leaves this one's cache alone


# --- the registry -------------------------------------------------------------------------------


def test_scene_data_registry():
    params = sp.VideoParams()
    assert sd.data_for_scene("CacheSizePerToken", params)["bytes_per_token"].tolist() == [
        3_997_696,
        249_856,
        31_232,
        70_272,
    ]
    assert sd.data_for_scene("Hook", params)["mla_bytes_per_token"] == 70_272
    with pytest.raises(UserError, match="no scene data for 'Nope'"):
        sd.data_for_scene("Nope", params)
