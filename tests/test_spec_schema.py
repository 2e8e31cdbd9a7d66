"""``zoo schema`` describes every registered component's params, accepts every spec that
README.md and docs/ show (each also builds on the meta device), and a spec's mistakes are
reported once each, at the path the user wrote."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import Field

import zoo
import zoo.spec_schema
from zoo.backends.attention import EagerAttention
from zoo.backends.base import BackendParams
from zoo.cli import main
from zoo.errors import SpecError
from zoo.registry import ATTENTION

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
# What a spec fragment in the docs (only `layers`, say) is completed with before it is checked.
COMPLETION = {"vocab_size": 260, "d_model": 256}
STAND_IN_ORIGIN = "tests:stand-in"


class StandInParams(BackendParams):
    block_size: int = Field(64, ge=16)


class StandInAttention(EagerAttention):
    """The docs' example plugin backend (docs/plugins.md), on the eager reference."""

    Params = StandInParams

    def build_options(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def doc_plugins():
    """Register the backends the docs' examples name as a third party would (docs/plugins.md)."""
    ATTENTION.register("my_attention", origin=STAND_IN_ORIGIN)(StandInAttention)
    yield
    ATTENTION._discard("my_attention", STAND_IN_ORIGIN)


def doc_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every fenced YAML/JSON block of README.md and docs/*.md that is a spec (a mapping with
    ``layers``), completed when it is a fragment."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        for index, match in enumerate(FENCE.finditer(path.read_text(encoding="utf-8"))):
            lang, body = match.group(1).lower(), match.group(2)
            if lang not in ("yaml", "yml", "json", ""):
                continue
            try:
                data = json.loads(body) if lang == "json" else yaml.safe_load(body)
            except (ValueError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and "layers" in data:
                spec = {**COMPLETION, **data}
                if "schedule" not in spec:
                    spec["schedule"] = {"name": "v9", "params": {"relative": True}}
                found.append((f"{path.relative_to(ROOT)}#{index}", spec))
    return found


DOC_SPECS = doc_specs()


def schema() -> dict[str, Any]:
    return zoo.spec_schema.json_schema()


def test_the_docs_show_specs() -> None:
    where = [name.split("#")[0] for name, _ in DOC_SPECS]
    assert "README.md" in where and "docs/plugins.md" in where, where


@pytest.mark.parametrize("name,spec", DOC_SPECS, ids=[name for name, _ in DOC_SPECS])
def test_every_doc_spec_validates_and_builds(doc_plugins, name, spec) -> None:
    jsonschema.Draft202012Validator(schema()).validate(spec)
    model = zoo.build(spec, device="meta")
    assert model.n_layers >= 1


def test_cli_schema_is_the_registry_schema(capsys) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == schema()


def _variant(tree: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    union = tree["$defs"][f"{kind}_component"]
    assert union["discriminator"]["propertyName"] == "name"
    return next(v for v in union["oneOf"] if v["properties"]["name"]["const"] == name)


def _params(tree: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    ref = variant["properties"]["params"]["$ref"].split("/")[-1]
    return tree["$defs"][ref]["properties"]


def test_schema_says_which_params_each_component_takes() -> None:
    tree = schema()
    for kind in ("mixer", "attention", "ssm", "converter", "conv", "norm", "schedule"):
        union = tree["$defs"][f"{kind}_component"]
        names = [v["properties"]["name"]["const"] for v in union["oneOf"]]
        assert names == zoo.registry(kind).names()
        for variant in union["oneOf"]:
            entry = zoo.registry(kind).get(variant["properties"]["name"]["const"])
            assert set(_params(tree, variant)) == set(entry.params_model.model_fields)
    transmamba = _variant(tree, "mixer", "transmamba")
    assert {"headdim", "d_state", "n_groups", "attn_gate"} <= set(_params(tree, transmamba))
    assert {"attention", "ssm", "converter", "conv", "norm"} <= set(transmamba["properties"])
    assert "attention" not in _variant(tree, "mixer", "mamba2")["properties"]  # no such slot
    assert "norm" in _variant(tree, "mixer", "mamba2")["properties"]
    assert set(_params(tree, _variant(tree, "ssm", "chunked"))) == {"chunk_size"}


def test_a_plugins_params_appear_in_the_schema(doc_plugins) -> None:
    tree = schema()
    assert _params(tree, _variant(tree, "attention", "my_attention"))["block_size"]["minimum"] == 16


def _readme_spec() -> dict[str, Any]:
    return copy.deepcopy(next(spec for name, spec in DOC_SPECS if name.startswith("README.md")))


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["layers"]["block"]["mixer"]["ssm"]["params"].update(chunk_size="64"),
        lambda s: s["layers"]["block"]["mixer"]["params"].update(bogus=1),
        lambda s: s["layers"]["block"]["mixer"].update(name="transmambo"),
        lambda s: s["layers"]["block"]["mixer"]["attention"].update(name="sdpa", params={"block_size": 8}),
        lambda s: s["layers"].update(every=0, other=s["layers"]["block"]),
        lambda s: s["schedule"]["params"].update(relative="yes"),
    ],
    ids=["string-number", "unknown-param", "unknown-mixer", "other-backend-param", "bad-every", "string-bool"],
)
def test_schema_refuses_what_load_spec_refuses(edit) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    spec = _readme_spec()
    assert validator.is_valid(spec)  # the unedited spec is fine: the edit is what is refused
    edit(spec)
    assert not validator.is_valid(spec)
    with pytest.raises(SpecError):
        zoo.load_spec(spec)


def test_a_mistake_in_a_pattern_is_reported_once_at_the_path_written() -> None:
    spec = _readme_spec()
    spec["layers"]["block"]["mixer"]["ssm"]["params"]["bogus"] = 1
    with pytest.raises(SpecError) as info:
        zoo.load_spec(spec)
    assert info.value.errors == [
        ("layers.block.mixer.ssm.params.bogus", "unknown param; ssm 'chunked' takes: chunk_size")
    ]
    assert "\n" not in str(info.value)


def test_a_mistake_every_layer_repeats_is_one_line() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["d_model"] = 127  # expand * 127 is not a multiple of any layer's headdim
    with pytest.raises(SpecError) as info:
        zoo.load_spec(spec)
    n = len(spec["layers"])
    assert len(info.value.errors) == n  # the programmatic list keeps each layer's
    assert "\n" not in str(info.value)
    assert f"layers.0-{n - 1}.mixer.params.headdim:" in str(info.value)


def test_folded_layer_errors_keep_their_order_and_gaps() -> None:
    error = SpecError(
        [("layers.0.a", "m"), ("d_model", "x"), ("layers.2.a", "m"), ("layers.1.a", "m"), ("layers.4.a", "m")]
    )
    assert str(error).splitlines() == ["invalid model spec (2 errors):", "  layers.0-2,4.a: m", "  d_model: x"]


def test_pattern_other_errors_point_at_other() -> None:
    spec = _readme_spec()
    spec["layers"].update(every=4, other={"mixer": {"name": "attention", "params": {"n_heads": 4, "bogus": 1}}})
    with pytest.raises(SpecError) as info:
        zoo.load_spec(spec)
    assert [path for path, _ in info.value.errors] == ["layers.other.mixer.params.bogus"]


def test_a_quoted_number_is_one_line_saying_so() -> None:
    spec = _readme_spec()
    spec["layers"]["block"]["mixer"]["ssm"]["params"]["chunk_size"] = "64"
    with pytest.raises(SpecError) as info:
        zoo.load_spec(spec)
    text = str(info.value)
    assert "\n" not in text
    assert "layers.block.mixer.ssm.params.chunk_size: Input should be a valid integer, got the string '64'" in text


def test_pattern_offset_needs_every() -> None:
    spec = _readme_spec()
    spec["layers"]["offset"] = 1
    with pytest.raises(SpecError, match="'offset' needs 'every'"):
        zoo.load_spec(spec)
    validator = jsonschema.Draft202012Validator(schema())
    assert not validator.is_valid(spec)
    assert validator.is_valid(_readme_spec())


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {node["$ref"]} if "$ref" in node else set().union(*map(_refs, node.values()), set())
    if isinstance(node, list):
        return set().union(*map(_refs, node), set())
    return set()


def test_every_reference_resolves() -> None:
    tree = schema()
    assert {ref.removeprefix("#/$defs/") for ref in _refs(tree)} <= set(tree["$defs"])


def test_a_params_model_without_json_schema_does_not_take_the_schema_down() -> None:
    import torch

    class Weird(BackendParams):
        model_config = {**BackendParams.model_config, "arbitrary_types_allowed": True}
        device: torch.device = torch.device("cpu")

    class WeirdAttention(EagerAttention):
        """Params with a torch.device field."""

        Params = Weird

    ATTENTION.register("weird_attention", origin=STAND_IN_ORIGIN)(WeirdAttention)
    try:
        tree = schema()
    finally:
        ATTENTION._discard("weird_attention", STAND_IN_ORIGIN)
    weird = _variant(tree, "attention", "weird_attention")
    assert weird["properties"]["params"]["type"] == "object"
    assert set(_params(tree, _variant(tree, "ssm", "chunked"))) == {"chunk_size"}  # the rest intact
    jsonschema.Draft202012Validator.check_schema(tree)
