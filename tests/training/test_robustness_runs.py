"""A run directory has one writer; a diverging run stops with the step named; configs are bounded."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from zoo import checkpoint as ckpt
from zoo.data import make_task
from zoo.training.runs import RunLockedError, run_lock
from zoo.training.trainer import NonFiniteLossError, TrainConfig, Trainer

FAST = {"compile": False, "progress": False, "warmup_steps": 1}
# Another writer, holding the lock the way run_lock does (flock + its pid in the file),
# without importing torch, so the fixture starts fast.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("locked", flush=True)
time.sleep(60)
"""


def _mqar():
    return make_task("mqar", seq_len=16, vocab_size=64, num_items=2, seed=0, eval_examples=8)


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_second_writer_is_refused_with_the_holder_pid(tmp_path, holder) -> None:
    with pytest.raises(RunLockedError, match=f"{tmp_path}.*pid {holder.pid}"), run_lock(tmp_path):
        pass


def test_second_train_cli_exits_nonzero_and_writes_nothing(tmp_path, holder, capsys) -> None:
    from zoo.cli import main

    code = main(["train", "transmamba-tiny", "--out", str(tmp_path), "--steps", "1", "--no-compile"])
    err = capsys.readouterr().err
    assert code != 0 and f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_lock_is_released_when_the_holder_dies(tmp_path, holder) -> None:
    holder.kill()
    holder.wait()
    assert (tmp_path / ".lock").exists()  # the stale file locks nothing
    with run_lock(tmp_path), run_lock(tmp_path):  # and the lock nests within one process
        pass


def test_trainer_fit_holds_the_lock(tmp_path, holder, standin) -> None:
    trainer = Trainer(standin(), _mqar(), TrainConfig(steps=1, batch_size=2, **FAST), out_dir=tmp_path)
    with pytest.raises(RunLockedError):
        trainer.fit()
    assert not (tmp_path / "metrics.jsonl").exists()


def test_nan_from_step_one_stops_and_saves_nothing(tmp_path, standin) -> None:
    model = standin()
    with torch.no_grad():
        model.embed.weight.fill_(float("nan"))
    trainer = Trainer(model, _mqar(), TrainConfig(steps=3, batch_size=2, save_every=1, **FAST), out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1; no checkpoint was saved"):
        trainer.fit()
    assert ckpt.list_checkpoints(tmp_path) == []


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, standin, monkeypatch) -> None:
    trainer = Trainer(standin(), _mqar(), TrainConfig(steps=5, batch_size=2, save_every=1, **FAST), out_dir=tmp_path)
    step = trainer.train_step

    def poisoned(index: int) -> dict:
        if index == 2:  # the third step's update writes NaN into the weights
            with torch.no_grad():
                trainer.model.embed.weight.fill_(float("nan"))
        return step(index)

    monkeypatch.setattr(trainer, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match="at step 3; the last good checkpoint is .*step-00000002"):
        trainer.fit()
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000002"
    weights = ckpt.open_checkpoint(latest).read_tensors(ckpt.MODEL_FILE)
    assert all(t.isfinite().all() for t in weights.values())


def test_nonfinite_weights_are_never_saved(tmp_path, standin) -> None:
    trainer = Trainer(standin(), _mqar(), TrainConfig(steps=1, batch_size=2, **FAST), out_dir=tmp_path)
    with torch.no_grad():
        trainer.model.embed.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="not saving"):
        trainer.save()
    assert ckpt.list_checkpoints(tmp_path) == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", math.inf),
        ("lr", math.nan),
        ("eps", -1.0),
        ("betas", (2.0, -1.0)),
        ("steps", True),
        ("batch_size", 1.5),
        ("grad_clip", math.inf),
        ("weight_decay", 1e300),
        ("device", "nope"),
        ("min_lr_ratio", math.nan),
    ],
)
def test_train_config_fields_are_bounded(field: str, value) -> None:
    with pytest.raises(ValidationError) as info:
        TrainConfig(**{field: value})
    assert field in str(info.value)


def test_train_config_round_trips_json() -> None:
    config = TrainConfig(betas=(0.8, 0.9), device="cpu")
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config


def test_cli_bad_lr_is_one_line(tmp_path, capsys) -> None:
    from zoo.cli import main

    code = main(["train", "transmamba-tiny", "--out", str(tmp_path), "--lr", "inf", "--no-compile"])
    err = capsys.readouterr().err
    assert code == 2 and "--lr inf: must be a finite number" in err and len(err.strip().splitlines()) == 1


def test_cli_eval_bad_batch_size_is_one_line(tmp_path, capsys) -> None:
    from zoo.cli import main

    code = main(["eval", str(tmp_path / "missing"), "--batch-size", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--batch-size 0: must be >= 1" in err
    assert len(err.strip().splitlines()) == 1
