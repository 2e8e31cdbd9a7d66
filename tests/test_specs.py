"""Spec validation: error paths for bad specs, round trips, files, and fuzzing."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import zoo
import zoo.spec_schema
from zoo.errors import SpecError
from zoo.specs import ModelSpec, expand_pattern, load_spec


def base() -> dict:
    return zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")


def mutate(fn) -> dict:
    spec = base()
    fn(spec)
    return spec


def set_path(spec: dict, path: str, value) -> None:
    keys = path.split(".")
    node = spec
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    node[int(last) if last.isdigit() else last] = value


def with_(path: str, value):
    return lambda spec: set_path(spec, path, value)


def delete(path: str):
    def fn(spec):
        keys = path.split(".")
        node = spec
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[keys[-1]]

    return fn


BAD_SPECS = [
    (
        "extra-backend-param",
        with_("layers.3.mixer.attention.params", {"bogus": 1}),
        "layers.3.mixer.attention.params.bogus",
        "unknown param; attention 'sdpa' takes: grouping",
    ),
    ("unknown-mixer", with_("layers.0.mixer.name", "transmambo"), "layers.0.mixer.name", "Did you mean 'transmamba'"),
    ("unknown-attention", with_("layers.1.mixer.attention.name", "sdp"), "layers.1.mixer.attention.name", "sdpa"),
    ("unknown-ssm", with_("layers.2.mixer.ssm.name", "nope"), "layers.2.mixer.ssm.name", "unknown ssm"),
    (
        "unknown-converter",
        with_("layers.2.mixer.converter.name", "x"),
        "layers.2.mixer.converter.name",
        "unknown converter",
    ),
    ("unknown-schedule", with_("schedule.name", "v10"), "schedule.name", "unknown schedule"),
    (
        "bad-chunk",
        with_("layers.0.mixer.ssm.params", {"chunk_size": 0}),
        "layers.0.mixer.ssm.params.chunk_size",
        "greater than or equal to 1",
    ),
    (
        "bad-chunk-type",
        with_("layers.0.mixer.ssm.params", {"chunk_size": "big"}),
        "layers.0.mixer.ssm.params.chunk_size",
        "valid integer",
    ),
    (
        "mixer-extra-param",
        with_("layers.5.mixer.params.bogus", True),
        "layers.5.mixer.params.bogus",
        "unknown param; mixer 'transmamba' takes: d_state,",
    ),
    (
        "headdim-divides",
        with_("layers.0.mixer.params.headdim", 48),
        "layers.0.mixer.params.headdim",
        "divisible by headdim",
    ),
    (
        "groups-divide",
        with_("layers.0.mixer.params.n_groups", 3),
        "layers.0.mixer.params.n_groups",
        "divisible by n_groups",
    ),
    ("odd-dstate-rope", with_("layers.0.mixer.params.d_state", 15), "layers.0.mixer.params.d_state", "even d_state"),
    (
        "dt-range",
        lambda s: s["layers"][0]["mixer"]["params"].update(dt_min=0.5, dt_max=0.1),
        "layers.0.mixer.params",
        "dt_min",
    ),
    ("negative-vocab", with_("vocab_size", -3), "vocab_size", "greater than or equal to 2"),
    ("zero-width", with_("d_model", 0), "d_model", "greater than or equal to 1"),
    ("missing-vocab", delete("vocab_size"), "vocab_size", "Field required"),
    ("empty-layers", with_("layers", []), "layers", "at least 1"),
    ("extra-top-level", with_("bogus", 1), "bogus", "Extra inputs are not permitted"),
    ("bad-norm", with_("norm.kind", "batchnorm"), "norm.kind", "rmsnorm"),
    ("bad-compile-mode", with_("compile.mode", "fast"), "compile.mode", "reduce-overhead"),
    (
        "slot-not-used",
        lambda s: s["layers"].__setitem__(0, {"mixer": {"name": "mamba2", "attention": {"name": "sdpa"}}}),
        "layers.0.mixer.attention",
        "takes no attention backend",
    ),
    ("schedule-missing", delete("schedule"), "schedule", "required"),
    ("constant-needs-one", with_("schedule", {"name": "constant", "params": {}}), "schedule.params", "exactly one"),
    (
        "cyclic-bad-fraction",
        with_("schedule", {"name": "cyclic", "params": {"fractions": [1.5]}}),
        "schedule.params",
        "[0, 1]",
    ),
    (
        "attention-heads",
        lambda s: s["layers"].__setitem__(0, {"mixer": {"name": "attention", "params": {"n_heads": 5}}}),
        "layers.0.mixer.params.n_heads",
        "divisible",
    ),
    ("mlp-extra", with_("layers.0.mlp.width", 3), "layers.0.mlp.width", "Extra inputs"),
    ("layer-not-mapping", with_("layers.2", 7), "layers.2", "valid dictionary"),
    (
        "pattern-bad-every",
        with_(
            "layers",
            {
                "n_layers": 4,
                "block": {"mixer": {"name": "mamba2"}},
                "every": 0,
                "other": {"mixer": {"name": "attention"}},
            },
        ),
        "layers",
        "positive integer",
    ),
]


@pytest.mark.parametrize("name,fn,path,message", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_error_path(name, fn, path, message) -> None:
    spec = mutate(fn)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    paths = [p for p, _ in info.value.errors]
    assert path in paths, f"expected {path!r} in {paths}: {info.value}"
    msg = dict(info.value.errors)[path]
    assert message in msg, f"{path}: {msg!r} lacks {message!r}"
    # direct pydantic validation refuses it too, with the path in the text
    with pytest.raises(ValidationError) as info2:
        ModelSpec.model_validate(spec)
    assert path.split(".")[-1] in str(info2.value)


def test_at_least_twenty_bad_specs() -> None:
    assert len(BAD_SPECS) >= 20


def test_round_trip_json_equal() -> None:
    for preset in zoo.registry("preset").names():
        spec = zoo.resolve_spec(preset)
        again = load_spec(json.loads(spec.to_json()))
        assert again == spec
        assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec


def test_spec_is_frozen() -> None:
    spec = zoo.resolve_spec("transmamba-tiny")
    with pytest.raises(ValidationError):
        spec.d_model = 3


def test_files_json_and_yaml(tmp_path) -> None:
    import yaml

    spec = zoo.resolve_spec("hybrid-tiny")
    (tmp_path / "s.json").write_text(spec.to_json())
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert load_spec(tmp_path / "s.json") == spec
    assert load_spec(str(tmp_path / "s.yaml")) == spec
    (tmp_path / "bad.yaml").write_text("d_model: [")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.json")


def test_pattern_expansion() -> None:
    layers = expand_pattern(16, "m", every=8, other="a")
    assert [i for i, x in enumerate(layers) if x == "a"] == [7, 15]
    spec = zoo.resolve_spec("hybrid-tiny")
    assert spec.mixer_names() == ["mamba2"] * 4 + ["attention"] + ["mamba2"]
    loaded = load_spec(
        {
            "vocab_size": 10,
            "d_model": 32,
            "layers": {
                "n_layers": 8,
                "block": {"mixer": {"name": "mamba2", "params": {"headdim": 16}}},
                "every": 4,
                "offset": 0,
                "other": {"mixer": {"name": "attention", "params": {"n_heads": 2}}},
            },
        }
    )
    assert loaded.mixer_names() == ["attention", "mamba2", "mamba2", "mamba2"] * 2


def test_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = zoo.spec_schema.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(zoo.resolve_spec("transmamba-tiny").to_json()), schema)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10_000) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "vocab_size",
        "d_model",
        "layers",
        "schedule",
        "norm",
        "tie_embeddings",
        "compile",
        "name",
        "init_std",
        "mixer",
        "params",
        "attention",
        "ssm",
        "n_layers",
        "block",
        "every",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(spec_keys | st.text(max_size=8), json_values, max_size=8))
def test_fuzz_arbitrary_dicts(data) -> None:
    try:
        result = load_spec(data)
    except SpecError:
        return
    assert isinstance(result, ModelSpec)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_valid_spec(data) -> None:
    spec = base()
    layer = data.draw(st.integers(0, len(spec["layers"]) - 1))
    target = data.draw(st.sampled_from(["mixer", "mixer.params", "mixer.attention", "mixer.ssm", "mlp", "root"]))
    key = data.draw(spec_keys | st.sampled_from(["d_state", "headdim", "n_groups", "chunk_size", "name", "d_ff"]))
    value = data.draw(json_values)
    spec = copy.deepcopy(spec)
    node = spec if target == "root" else spec["layers"][layer]
    if target != "root":
        for part in target.split("."):
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[key] = value
    try:
        load_spec(spec)
    except SpecError:
        pass
