"""The ``phases`` schedule: training steps run each phase's schedule in turn (a phase's own
draws unchanged), evaluation and the trained record under the last phase, the trainer's
recompile bound, and bad phases in one line."""

from __future__ import annotations

import pytest

import zoo
from zoo.registry import SCHEDULE
from zoo.training.config import TrainConfig
from zoo.training.trainer import Trainer

V9 = {"name": "v9", "params": {"relative": True}}
WIDE = {"name": "random", "params": {"fractions": [0.0, 0.5, 1.0], "n_variants": 16}}
MIXTURE = {"name": "mixture", "params": {"components": [V9, WIDE]}}


def _phases(*phases):
    return SCHEDULE.get("phases").obj({"phases": list(phases)})


def test_each_step_runs_its_phase_and_a_phase_draws_as_it_would_alone() -> None:
    schedule = _phases({**MIXTURE, "steps": 5}, {"name": "ssm_only", "steps": 2}, V9)
    mixture = SCHEDULE.get("mixture").obj(MIXTURE["params"])
    v9 = SCHEDULE.get("v9").obj({"relative": True}).transpoints(8, 256)
    assert [schedule.transpoints(8, 256, step=s) for s in range(5)] == [
        mixture.transpoints(8, 256, step=s) for s in range(5)
    ]
    assert schedule.transpoints(8, 256, step=5) == schedule.transpoints(8, 256, step=6) == [0] * 8
    assert all(schedule.transpoints(8, 256, step=s) == v9 for s in (7, 8, 1000))
    assert schedule.transpoints(8, 256) == v9  # evaluation: the last phase
    assert schedule.n_variants == mixture.n_variants + 1 + 1 and schedule.is_random


def test_evaluation_and_the_record_use_the_last_phase() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {
        "name": "phases",
        "params": {"phases": [{**WIDE, "steps": 2}, {"name": "cyclic", "params": {"fractions": [0.0, 0.5]}}]},
    }
    model = zoo.build({**spec, "vocab_size": 32})
    assert model.schedule.transpoints(6, 32) == [0, 16] * 3
    from zoo.data.tasks import make_task

    task = make_task("induction", seq_len=32, vocab_size=32, seed=0)
    trainer = Trainer(model, task, TrainConfig(steps=1, batch_size=2, compile=False, progress=False, device="cpu"))
    assert trainer.transpoints(32, 0) == SCHEDULE.get("random").obj(WIDE["params"]).transpoints(6, 32, step=0)
    assert trainer.transpoints(32, 2) == [0, 16] * 3
    trainer.train_step(0)
    record = model.trained_transpoints
    assert record.random and record.schedule == "phases" and list(record.transpoints) == [0, 16] * 3
    assert record.params["phases"][0]["steps"] == 2  # the whole plan on record


@pytest.mark.parametrize(
    "phases, message",
    [
        ([{"name": "v99"}], r"phases\[0\] \(v99\): unknown schedule 'v99'"),
        ([{**MIXTURE, "steps": 3}, {"name": "random", "params": {"fractions": [2.0]}}], r"phases\[1\] \(random\): "),
        ([MIXTURE, V9], r"phases\[0\] \(mixture\): steps: give how many training steps it lasts"),
        ([{**V9, "steps": 4}], r"phases\[0\] \(v9\): steps: the last phase runs to the end"),
        ([{"name": "phases", "params": {"phases": [V9]}, "steps": 2}, V9], r"phases\[0\]: a phase cannot"),
        ([{**V9, "steps": 0}, V9], r"steps"),
        ([], r"phases"),
    ],
)
def test_bad_phases_are_one_line(phases, message) -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {"name": "phases", "params": {"phases": phases}}
    with pytest.raises(zoo.SpecError, match=message) as info:
        zoo.build(spec, device="meta")
    assert "\n" not in str(info.value)  # one line


def test_a_mixture_cannot_hold_phases() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    inner = {"name": "phases", "params": {"phases": [V9]}}
    spec["schedule"] = {"name": "mixture", "params": {"components": [V9, inner]}}
    with pytest.raises(zoo.SpecError, match=r"components\[1\]: .*cannot be mixtures or phases"):
        zoo.build(spec, device="meta")


def test_the_trainer_bounds_recompiles_by_the_sum_of_the_phases(monkeypatch) -> None:
    import zoo.training.trainer as trainer_module
    from zoo.data.tasks import make_task

    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {"name": "phases", "params": {"phases": [{**WIDE, "steps": 10}, V9]}}
    model = zoo.build({**spec, "vocab_size": 32})
    limits = []

    def compiled(module, *, what, recompile_limit=None, dynamic=None):
        limits.append(recompile_limit)
        return module

    monkeypatch.setattr(trainer_module, "compiled", compiled)
    task = make_task("induction", seq_len=32, vocab_size=32, seed=0)
    Trainer(model, task, TrainConfig(steps=1, batch_size=2, compile=True, progress=False, device="cpu"))
    assert limits == [16 + 1 + 8]
