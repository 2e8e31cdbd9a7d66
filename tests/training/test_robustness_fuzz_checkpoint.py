"""Fuzz: a saved checkpoint with a damaged file (random bytes, truncation, mutated JSON, with
or without a re-sealed manifest) loads or raises a ZooError, never another exception."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import checkpoint as ckpt
from zoo.errors import ZooError
from zoo.training.optim import make_optimizer

FILES = [ckpt.MANIFEST, ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE, ckpt.SPEC_FILE, ckpt.TOKENIZER_FILE]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from standin import StandinLM

    torch.manual_seed(0)
    model = StandinLM()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    model(torch.randint(0, 64, (2, 8))).square().mean().backward()
    optimizer.step()
    root = tmp_path_factory.mktemp("fuzz")
    path = ckpt.save_checkpoint(
        root, 1, model=model, optimizer=optimizer, trainer_state={"task": {"task": "mqar"}}, tokenizer={"kind": "byte"}
    )
    return path, StandinLM


def _mutate_json(data, draw):
    """Replace one value somewhere in a JSON document."""
    node, key = data, None
    for _ in range(draw(st.integers(0, 4))):
        if isinstance(node, dict):
            children = list(node.items())
        else:
            children = list(enumerate(node)) if isinstance(node, list) else []
        if not children:
            break
        key, child = children[draw(st.integers(0, len(children) - 1))]
        if isinstance(child, (dict, list)):
            node = child
        else:
            break
    replacement = draw(json_values)
    if key is None or not isinstance(node, (dict, list)) or not node:
        return replacement
    if isinstance(node, dict):
        node[key if key in node else next(iter(node))] = replacement
    else:
        node[key if isinstance(key, int) and key < len(node) else 0] = replacement
    return data


def _reseal(path: Path) -> None:
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_damaged_checkpoint_loads_or_raises_a_zoo_error(saved, tmp_path, data) -> None:
    source, standin = saved
    path = tmp_path / f"case-{data.draw(st.integers(0, 10**9))}" / source.name
    shutil.rmtree(path.parent, ignore_errors=True)
    shutil.copytree(source, path)
    name = data.draw(st.sampled_from(FILES))
    file = path / name
    blob = file.read_bytes()
    how = data.draw(
        st.sampled_from(
            ["truncate", "bytes", "flip", "json"] if name.endswith(".json") else ["truncate", "bytes", "flip"]
        )
    )
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, max(0, len(blob) - 1)))]
    elif how == "bytes":
        blob = data.draw(st.binary(max_size=256))
    elif how == "flip":
        index = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:index] + bytes([blob[index] ^ data.draw(st.integers(1, 255))]) + blob[index + 1 :]
    else:
        blob = json.dumps(_mutate_json(json.loads(blob), data.draw)).encode()
    file.write_bytes(blob)
    if name != ckpt.MANIFEST and data.draw(st.booleans()):
        _reseal(path)  # as an attacker would: the manifest then agrees with the damage
    try:
        checkpoint = ckpt.open_checkpoint(path)
        model = standin()
        ckpt.load_model_state(model, checkpoint)
        ckpt.load_optimizer_state(make_optimizer(model, lr=1e-2, weight_decay=0.1), checkpoint)
        assert isinstance(checkpoint.trainer_state, dict)
        ckpt.load_tokenizer(path)
        checkpoint.spec  # noqa: B018 - reads and checks the file
    except ZooError:
        pass
