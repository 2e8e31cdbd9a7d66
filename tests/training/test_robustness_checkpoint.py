"""Hostile checkpoints: every malformed or tampered file is a CheckpointError naming it.

The manifest's hashes detect accidents, not attackers (whoever edits a file can rewrite
the manifest), so most cases here re-seal the manifest after tampering: what stops them
is the checking of names, types, shapes and dtypes.
"""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zoo import checkpoint as ckpt
from zoo.errors import CheckpointError, ZooError
from zoo.training.optim import make_optimizer
from zoo.training.runs import task_from_description


def _saved(tmp_path: Path, standin, step: int = 1) -> tuple[Path, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = standin()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    model(torch.randint(0, 64, (2, 8))).square().mean().backward()
    optimizer.step()
    path = ckpt.save_checkpoint(
        tmp_path,
        step,
        model=model,
        optimizer=optimizer,
        trainer_state={"task": {"task": "mqar"}},
        tokenizer={"kind": "byte"},
    )
    return path, model, optimizer


def _manifest(path: Path) -> dict:
    return json.loads((path / ckpt.MANIFEST).read_text())


def _reseal(path: Path, manifest: dict | None = None) -> None:
    """Recompute the manifest after tampering, as an attacker would."""
    manifest = manifest or _manifest(path)
    for name in list(manifest["files"]):
        file = path / name
        if file.is_file() and file.parent == path:
            data = file.read_bytes()
            manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))


def test_manifest_must_list_the_weights(tmp_path, standin) -> None:
    path, _, _ = _saved(tmp_path, standin)
    manifest = _manifest(path)
    del manifest["files"][ckpt.MODEL_FILE]
    _reseal(path, manifest)
    (path / ckpt.MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="does not list model.safetensors"):
        ckpt.open_checkpoint(path)


@pytest.mark.parametrize("name", ["../secret", "../../etc/passwd", "/etc/passwd", ".hidden", "a/b", "..", "x\n"])
def test_manifest_names_stay_inside_the_checkpoint(tmp_path, standin, name: str, monkeypatch) -> None:
    path, _, _ = _saved(tmp_path, standin)
    secret = tmp_path / "checkpoints" / "secret"
    secret.write_bytes(b"not yours")
    manifest = _manifest(path)
    manifest["files"][name] = {"bytes": 9, "sha256": hashlib.sha256(b"not yours").hexdigest()}
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))
    read: list[Path] = []
    monkeypatch.setattr(ckpt, "_sha256", lambda p: read.append(p) or "0" * 64)
    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        ckpt.open_checkpoint(path)
    assert read == []


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.int32])
def test_integer_or_bool_weights_are_refused(tmp_path, standin, dtype) -> None:
    path, model, _ = _saved(tmp_path, standin)
    tensors = ckpt.model_tensors(model)
    name = next(iter(tensors))
    tensors[name] = torch.ones_like(tensors[name], dtype=dtype)
    save_file(tensors, str(path / ckpt.MODEL_FILE))
    _reseal(path)
    with pytest.raises(CheckpointError, match=f"{name!r} has dtype"):
        ckpt.load_model_state(standin(), ckpt.open_checkpoint(path))


def test_wrong_shape_weights_are_refused(tmp_path, standin) -> None:
    path, model, _ = _saved(tmp_path, standin)
    tensors = ckpt.model_tensors(model)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3)
    save_file(tensors, str(path / ckpt.MODEL_FILE))
    _reseal(path)
    with pytest.raises(CheckpointError, match="has shape"):
        ckpt.load_model_state(standin(), ckpt.open_checkpoint(path))


MANIFESTS = {
    "list": [],
    "files-list": {"format": "zoo-checkpoint", "version": 1, "step": 1, "files": []},
    "step-str": {"format": "zoo-checkpoint", "version": 1, "step": "x", "files": {}},
    "version-str": {"format": "zoo-checkpoint", "version": "9", "step": 1, "files": {}},
    "entry-str": {"format": "zoo-checkpoint", "version": 1, "step": 1, "files": {"model.safetensors": "x"}},
    "bytes-str": {
        "format": "zoo-checkpoint",
        "version": 1,
        "step": 1,
        "files": {"model.safetensors": {"bytes": "1", "sha256": "0" * 64}},
    },
}


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_malformed_manifest_is_named(tmp_path, standin, name: str) -> None:
    path, _, _ = _saved(tmp_path, standin)
    (path / ckpt.MANIFEST).write_text(json.dumps(MANIFESTS[name]))
    with pytest.raises(CheckpointError, match="MANIFEST.json"):
        ckpt.open_checkpoint(path)


@pytest.mark.parametrize(
    "file,content",
    [
        (ckpt.STATE_FILE, "[1, 2]"),
        (ckpt.STATE_FILE, '"text"'),
        (ckpt.TOKENIZER_FILE, "[]"),
        (ckpt.TOKENIZER_FILE, '{"kind": 3}'),
        (ckpt.TOKENIZER_FILE, '{"kind": "bpe", "tokenizer": "{nope"}'),
        (ckpt.TOKENIZER_FILE, '{"kind": "bpe"}'),
        (ckpt.STATE_FILE, "[" * 100_000),
    ],
)
def test_malformed_json_files_are_zoo_errors(tmp_path, standin, file: str, content: str) -> None:
    path, _, optimizer = _saved(tmp_path, standin)
    (path / file).write_text(content)
    _reseal(path)
    checkpoint = ckpt.open_checkpoint(path)
    with pytest.raises(ZooError) as info:
        checkpoint.trainer_state  # noqa: B018 - the property reads the file
        ckpt.load_tokenizer(path)
    assert file in str(info.value) or "tokenizer" in str(info.value)


@pytest.mark.parametrize(
    "meta",
    [
        None,
        [],
        {"param_groups": "x"},
        {"param_groups": [{}]},
        {"param_groups": [{"params": [0]}, {"params": [1]}]},
    ],
)
def test_malformed_optimizer_state_is_a_checkpoint_error(tmp_path, standin, meta) -> None:
    path, model, _ = _saved(tmp_path, standin)
    state = json.loads((path / ckpt.STATE_FILE).read_text())
    state["optimizer"] = meta
    (path / ckpt.STATE_FILE).write_text(json.dumps(state))
    _reseal(path)
    with pytest.raises(CheckpointError):
        ckpt.load_optimizer_state(make_optimizer(model, lr=1e-2, weight_decay=0.1), ckpt.open_checkpoint(path))


def test_optimizer_moment_of_the_wrong_shape_is_refused(tmp_path, standin) -> None:
    path, model, optimizer = _saved(tmp_path, standin)
    tensors, _ = ckpt.optimizer_to_safetensors(optimizer)
    name = next(n for n in tensors if n.endswith("exp_avg"))
    tensors[name] = torch.zeros(2, 2)
    save_file(tensors, str(path / ckpt.OPTIMIZER_FILE))
    _reseal(path)
    with pytest.raises(CheckpointError, match=f"optimizer tensor {name!r}"):
        ckpt.load_optimizer_state(make_optimizer(model, lr=1e-2, weight_decay=0.1), ckpt.open_checkpoint(path))


def test_a_corpus_path_in_the_checkpoint_is_not_read(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private " * 1000)
    description = {"task": "text", "corpus": str(secret), "seq_len": 16, "seed": 0}
    with pytest.raises(ZooError, match="--data"):
        task_from_description(description)
    assert task_from_description(description, data="builtin:topics").describe()["corpus"] == "builtin:topics"
    with pytest.raises(ZooError, match="cannot rebuild"):
        task_from_description({"task": "mqar", "seq_len": 16})


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, standin, monkeypatch) -> None:
    path, model, optimizer = _saved(tmp_path, standin, step=1)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    calls = []

    def full(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the optimizer file: the model file is written already
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", full)
    for step in (2, 1):  # a new step, and a re-save of the existing one
        calls.clear()
        with pytest.raises(CheckpointError, match=f"step {step} into {tmp_path}: No space left on device"):
            ckpt.save_checkpoint(tmp_path, step, model=model, optimizer=optimizer, keep_last=1)
        assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [path.name]
        assert {p.name: p.read_bytes() for p in path.iterdir()} == before
        assert list((tmp_path / ckpt.STAGING).iterdir()) == []
    ckpt.open_checkpoint(path)
