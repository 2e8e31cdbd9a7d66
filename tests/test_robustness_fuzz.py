"""Fuzz: a hostile value anywhere in a valid spec gets a result or a ZooError, through build too."""

from __future__ import annotations

import copy
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.builder import model_bytes
from zoo.errors import ZooError

hostile = (
    st.sampled_from(
        [
            math.inf,
            -math.inf,
            math.nan,
            1e300,
            -1e300,
            0.0,
            -1,
            0,
            1,
            2**63,
            10**12,
            True,
            False,
            None,
            "",
            "\x1b[2J",
            "x\n",
            [],
            {},
            [1, 2],
            {"a": 1},
        ]
    )
    | st.integers(-5, 5000)
    | st.floats(-1e6, 1e6, allow_nan=False)
)
KEYS = [
    "d_state",
    "headdim",
    "n_groups",
    "expand",
    "d_conv",
    "dt_min",
    "dt_max",
    "dt_init_floor",
    "A_init_min",
    "A_init_max",
    "attn_scale",
    "rope_theta",
    "norm_eps",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "chunk_size",
    "vocab_size",
    "d_model",
    "init_std",
    "name",
    "d_ff",
    "eps",
    "backend",
    "fraction",
    "value",
]
BASES = {name: zoo.resolve_spec(f"{name}-tiny").model_dump(mode="json") for name in ("transmamba", "hybrid")}


def _nodes(spec: dict) -> list[dict]:
    nodes = [spec, spec["norm"], spec["compile"]]
    if spec.get("schedule"):
        nodes.append(spec["schedule"]["params"])
    for layer in spec["layers"]:
        mixer = layer["mixer"]
        nodes += [mixer["params"], layer["mlp"]]
        nodes += [mixer[slot]["params"] for slot in ("attention", "ssm", "converter") if mixer.get(slot)]
    return nodes


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BASES)), st.data())
def test_hostile_values_give_a_model_or_a_zoo_error(base: str, data) -> None:
    spec = copy.deepcopy(BASES[base])
    nodes = _nodes(spec)
    for _ in range(data.draw(st.integers(1, 3))):
        node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        node[data.draw(st.sampled_from(KEYS))] = data.draw(hostile)
    try:
        model = zoo.build(spec, device="meta")
        model_bytes(model.spec)
    except ZooError:
        pass
