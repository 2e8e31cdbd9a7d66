"""The trainer never lets a new run share its directory with an earlier run's checkpoints."""

from __future__ import annotations

import pytest

import zoo.checkpoint as ckpt
from zoo.errors import ZooError


def test_trainer_api_refuses_a_fresh_fit_over_checkpoints_unless_overwrite(tmp_path, standin) -> None:
    from zoo.data.tasks import make_task
    from zoo.training.trainer import TrainConfig, Trainer

    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4, seed=0)
    config = TrainConfig(steps=2, batch_size=2, warmup_steps=1, compile=False, progress=False, device="cpu")

    def trainer() -> Trainer:
        return Trainer(standin(vocab_size=task.vocab_size, d_model=16), task, config, out_dir=tmp_path)

    trainer().fit()
    with pytest.raises(ZooError, match="holds an earlier run .*overwrite=True"):
        trainer().fit()
    assert trainer().fit(overwrite=True).steps == 2
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002"]
