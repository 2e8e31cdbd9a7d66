from __future__ import annotations

import json

import pytest
import torch

from zoo import checkpoint as ckpt
from zoo.errors import CheckpointError
from zoo.training.optim import make_optimizer


def _trained(standin):
    torch.manual_seed(0)
    model = standin()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        model(torch.randint(0, 64, (2, 8))).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_round_trip_weights_optimizer_and_json(tmp_path, standin) -> None:
    model, opt = _trained(standin)
    path = ckpt.save_checkpoint(
        tmp_path, 7, model=model, optimizer=opt, trainer_state={"x": 1}, tokenizer={"kind": "byte"}
    )
    assert path == tmp_path / "checkpoints" / "step-00000007"
    loaded = ckpt.open_checkpoint(tmp_path)  # a run dir resolves to its latest checkpoint
    assert loaded.step == 7 and loaded.trainer_state["x"] == 1 and loaded.spec == model.spec
    fresh = standin()
    ckpt.load_model_state(fresh, loaded)
    assert fresh.head.weight is fresh.embed.weight  # tying survives
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh_opt = make_optimizer(fresh, lr=1e-2, weight_decay=0.1)
    ckpt.load_optimizer_state(fresh_opt, loaded)
    fresh_state = fresh_opt.state_dict()["state"]
    for index, a in opt.state_dict()["state"].items():
        assert all(torch.equal(a[k], fresh_state[index][k]) for k in a)
    assert fresh_opt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_keep_last_k_and_no_staging_leftovers(tmp_path, standin) -> None:
    model, opt = _trained(standin)
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, step, model=model, optimizer=opt, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]
    assert list((tmp_path / ".staging").iterdir()) == []


def test_truncated_file_is_named(tmp_path, standin) -> None:
    model, opt = _trained(standin)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model, optimizer=opt)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        ckpt.open_checkpoint(path)


def test_corrupted_byte_is_named(tmp_path, standin) -> None:
    model, opt = _trained(standin)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model, optimizer=opt)
    file = path / "optimizer.safetensors"
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="optimizer.safetensors is corrupted"):
        ckpt.open_checkpoint(path)


def test_garbage_safetensors_without_verification_is_named(tmp_path, standin) -> None:
    model, _ = _trained(standin)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model)
    (path / "model.safetensors").write_bytes(b"\x00" * 16)
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["files"]["model.safetensors"]["bytes"] = 16
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="model.safetensors is not a valid safetensors"):
        ckpt.load_model_state(standin(), ckpt.open_checkpoint(path, verify=False))


def test_missing_manifest_and_missing_path(tmp_path, standin) -> None:
    model, _ = _trained(standin)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model)
    (path / "MANIFEST.json").unlink()
    with pytest.raises(CheckpointError, match="MANIFEST.json is missing"):
        ckpt.open_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.open_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        ckpt.open_checkpoint(tmp_path / ".staging")


def test_shape_mismatch_is_reported(tmp_path, standin) -> None:
    model, _ = _trained(standin)
    ckpt.save_checkpoint(tmp_path, 1, model=model)
    with pytest.raises(CheckpointError, match="shape"):
        ckpt.load_model_state(standin(d_model=16), ckpt.open_checkpoint(tmp_path))


def test_atomic_write_text(tmp_path) -> None:
    target = tmp_path / "a.json"
    ckpt.atomic_write_text(target, "one")
    ckpt.atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
