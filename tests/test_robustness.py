"""Hostile specs: each input here once validated (or crashed) and now gets a clear SpecError."""

from __future__ import annotations

import json

import pytest

import zoo
from zoo.errors import SpecError
from zoo.specs import load_spec


def base() -> dict:
    return zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")


def with_mixer_params(**params) -> dict:
    spec = base()
    spec["layers"][0]["mixer"]["params"].update(params)
    return spec


BAD = [
    ("dt_max-inf", with_mixer_params(dt_max=float("inf")), "layers.0.mixer.params.dt_max"),
    ("dt_max-1e300", with_mixer_params(dt_max=1e300), "layers.0.mixer.params.dt_max"),
    ("dt_min-nan", with_mixer_params(dt_min=float("nan")), "layers.0.mixer.params.dt_min"),
    ("attn_scale-inf", with_mixer_params(attn_scale=float("inf")), "layers.0.mixer.params.attn_scale"),
    ("A_init_max-1e300", with_mixer_params(A_init_max=1e300), "layers.0.mixer.params.A_init_max"),
    ("headdim-bool", with_mixer_params(headdim=True), "layers.0.mixer.params.headdim"),
    ("d_model-bool", {**base(), "d_model": True}, "d_model"),
    ("vocab-bool", {**base(), "vocab_size": True}, "vocab_size"),
    ("init_std-inf", {**base(), "init_std": float("inf")}, "init_std"),
    ("compile-backend", {**base(), "compile": {"backend": "nope"}}, "compile.backend"),
    ("name-escape", {**base(), "name": "evil\x1b[2J"}, "name"),
    ("mixer-name-newline", None, "layers.0.mixer.name"),
]


def _mixer_name_newline() -> dict:
    spec = base()
    spec["layers"][0]["mixer"]["name"] = "transmamba\nrm -rf"
    return spec


@pytest.mark.parametrize("name,spec,path", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_a_spec_error(name: str, spec: dict | None, path: str) -> None:
    spec = spec if spec is not None else _mixer_name_newline()
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert path in [p for p, _ in info.value.errors], info.value.errors


def test_registered_compile_backend_is_accepted() -> None:
    for backend in ("inductor", "eager", "aot_eager"):
        assert load_spec({**base(), "compile": {"backend": backend}}).compile.backend == backend


def test_control_characters_never_printed_raw() -> None:
    spec = base()
    spec["layers"][0]["mixer"]["params"]["\x1b[31mbogus"] = 1
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    message = str(info.value)
    assert "\x1b" not in message and "bogus" in message
    with pytest.raises(SpecError) as info:
        load_spec({**base(), "name": "x\x07y"})
    assert "\x07" not in str(info.value) and "x\\x07y" in str(info.value)


def test_duplicate_yaml_key_is_refused() -> None:
    text = "vocab_size: 256\nd_model: 64\nd_model: 128\nlayers: []\n"
    with pytest.raises(SpecError, match="duplicate key 'd_model'"):
        load_spec(text)


def test_duplicate_json_key_is_refused() -> None:
    text = '{"vocab_size": 256, "vocab_size": 512, "d_model": 64, "layers": []}\n'
    with pytest.raises(SpecError, match="duplicate key 'vocab_size'"):
        load_spec(text)


@pytest.mark.parametrize("kind", ["json", "yaml-flow", "dict"])
def test_deep_nesting_is_a_spec_error(kind: str) -> None:
    depth = 100_000
    if kind == "dict":
        obj: object = {}
        for _ in range(depth):
            obj = {"a": obj}
        spec: object = {**base(), "name": obj}
    else:
        spec = "{" + '"a": [' * depth + "]" * depth + "}\n"
    with pytest.raises(SpecError, match="nests deeper than"):
        load_spec(spec)


def test_ordinary_nesting_still_loads(tmp_path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(base()))
    assert load_spec(path).d_model == base()["d_model"]
