"""The ``mixture`` schedule: training steps split between schedules by weight, repeatably;
evaluation and the trained record under the first component; bad components in one line."""

from __future__ import annotations

from collections import Counter

import pytest

import zoo
from zoo.registry import SCHEDULE
from zoo.training.config import TrainConfig
from zoo.training.trainer import Trainer

V9 = {"name": "v9", "params": {"relative": True}}
WIDE = {"name": "random", "params": {"fractions": [0.0, 0.5, 1.0], "n_variants": 16}}


def _mixture(*components, seed=0):
    return SCHEDULE.get("mixture").obj({"components": list(components), "seed": seed})


def test_steps_follow_the_weights_and_repeat() -> None:
    mixture = _mixture(V9, {**WIDE, "weight": 3.0})
    v9 = SCHEDULE.get("v9").obj({"relative": True}).transpoints(8, 256)
    wide = SCHEDULE.get("random").obj(WIDE["params"])
    picks = Counter()
    for step in range(2000):
        points = mixture.transpoints(8, 256, step=step)
        if points == v9:
            picks["v9"] += 1
        else:
            assert points == wide.transpoints(8, 256, step=step)  # the component's own draw for that step
            picks["wide"] += 1
    assert 0.2 < picks["v9"] / 2000 < 0.3  # weight 1 of 4 (random's draws of exactly V9 are rare)
    assert [mixture.transpoints(8, 256, step=s) for s in range(20)] == [
        _mixture(V9, {**WIDE, "weight": 3.0}).transpoints(8, 256, step=s) for s in range(20)
    ]
    other_seed = [_mixture(V9, {**WIDE, "weight": 3.0}, seed=1).transpoints(8, 256, step=s) for s in range(20)]
    assert other_seed != [mixture.transpoints(8, 256, step=s) for s in range(20)]


def test_evaluation_and_the_record_use_the_first_component() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {
        "name": "mixture",
        "params": {"components": [{"name": "cyclic", "params": {"fractions": [0.0, 0.5]}}, WIDE]},
    }
    model = zoo.build({**spec, "vocab_size": 32})
    assert model.schedule.is_random and model.schedule.transpoints(6, 32) == [0, 16] * 3
    from zoo.data.tasks import make_task

    task = make_task("induction", seq_len=32, vocab_size=32, seed=0)
    Trainer(model, task, TrainConfig(steps=1, batch_size=2, compile=False, progress=False, device="cpu")).train_step(3)
    record = model.trained_transpoints
    assert record.random and record.schedule == "mixture" and list(record.transpoints) == [0, 16] * 3
    assert record.params["components"][1]["params"]["fractions"] == [0.0, 0.5, 1.0]  # the distribution on record


@pytest.mark.parametrize(
    "components, message",
    [
        ([{"name": "v99"}], r"components\[0\] \(v99\): unknown schedule 'v99'"),
        ([V9, {"name": "random", "params": {"fractions": [2.0]}}], r"components\[1\] \(random\): .*\[0, 1\]"),
        ([V9, {"name": "mixture", "params": {"components": [V9]}}], r"components\[1\]: .*cannot be mixtures"),
        ([{**V9, "weight": 0}], r"weight"),
        ([], r"components"),
    ],
)
def test_bad_components_are_one_line(components, message) -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {"name": "mixture", "params": {"components": components}}
    with pytest.raises(zoo.SpecError, match=message) as info:
        zoo.build(spec, device="meta")
    assert "\n" not in str(info.value)  # one line


def test_the_trainer_bounds_recompiles_by_the_sum_of_the_components(monkeypatch) -> None:
    import zoo.training.trainer as trainer_module
    from zoo.data.tasks import make_task

    mixture = _mixture(V9, WIDE, {"name": "random", "params": {"n_variants": 5}})
    assert mixture.n_variants == 1 + 16 + 5
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {"name": "mixture", "params": {"components": [V9, WIDE]}}
    model = zoo.build({**spec, "vocab_size": 32})
    limits = []

    def compiled(module, *, what, recompile_limit=None, dynamic=None):
        assert dynamic is False  # TransPoint models compile static shapes (zoo.compile.spec_options)
        limits.append(recompile_limit)
        return module

    monkeypatch.setattr(trainer_module, "compiled", compiled)
    task = make_task("induction", seq_len=32, vocab_size=32, seed=0)
    Trainer(model, task, TrainConfig(steps=1, batch_size=2, compile=True, progress=False, device="cpu"))
    assert limits == [1 + 16 + 8]  # one graph per distinct TransPoint list, and room to spare
