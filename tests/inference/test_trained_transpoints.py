"""Inference runs at the TransPoints the model was trained with (CPU, tiny models, eager).

The tiny TransMamba preset has six layers under V9 relative; trained at T = 64 its
TransPoints are [0, 1, 2, 4, 8, 16]. A 10-token prompt with 12 new tokens makes a 22-token
cache, where the schedule itself would give [0, 1, 1, 1, 3, 6]: the record, not the schedule
at the cache length, must decide, and the layer with P = 16 crosses its TransPoint while
decoding.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import zoo
from zoo.data import make_task
from zoo.inference import TransPointWarning, decode, prefill
from zoo.schedule import TransPointRecord
from zoo.training import TrainConfig, Trainer

SEQ_LEN, PROMPT, NEW = 64, 10, 12
TRAINED = [0, 1, 2, 4, 8, 16]


def _task(seq_len: int = SEQ_LEN):
    return make_task("mqar", seq_len=seq_len, vocab_size=64, num_items=4, eval_examples=8)


def _config(**overrides) -> TrainConfig:
    return TrainConfig(steps=1, batch_size=2, compile=False, progress=False, device="cpu", **overrides)


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.build("transmamba-tiny")
    Trainer(model, _task(), _config()).train_step(0)
    return model.eval()


def _prompt() -> torch.Tensor:
    return torch.randint(0, 64, (1, PROMPT), generator=torch.Generator().manual_seed(1))


def test_training_records_its_transpoints(trained) -> None:
    record = trained.trained_transpoints
    assert record is not None and record.seq_len == SEQ_LEN
    assert list(record.transpoints) == TRAINED == trained.transpoints_for(SEQ_LEN)
    assert record.schedule == "v9" and record.params == {"relative": True} and not record.random
    # the cache length alone would give other TransPoints: the situation the record fixes
    assert trained.transpoints_for(PROMPT + NEW) != TRAINED


def test_record_keeps_absolute_positions_at_every_length() -> None:
    record = TransPointRecord(seq_len=64, transpoints=(0, 16, 40, 64))
    assert record.at(64) == [0, 16, 40, 64]
    assert record.at(32) == [0, 16, 32, 32]  # P beyond the run: attention throughout, as in training
    assert record.at(100) == [0, 16, 40, 100]  # trained as attention throughout: stays attention
    assert record.at(1) == [0, 1, 1, 1]  # a nonzero P never becomes 0
    assert TransPointRecord.from_json(record.to_json(), "test", 4) == record


def test_fresh_build_keeps_the_schedule_at_each_length() -> None:
    model = zoo.build("transmamba-tiny")
    assert model.trained_transpoints is None
    assert model.default_transpoints(22) == model.transpoints_for(22)
    assert model.allocate_cache(1, 22).transpoints == model.transpoints_for(22)


def test_prefill_and_decode_equal_the_forward_at_the_training_transpoints(trained) -> None:
    prompt = _prompt()
    cache = trained.allocate_cache(1, PROMPT + NEW)
    assert cache.transpoints == TRAINED
    # a prompt shorter than P keeps the prefix buffer: P = 16 layer still in attention after prefill
    logits = [prefill(trained, cache, prompt)]
    assert cache.layers[5].key is not None and cache.phases()[5] == "attn"
    tokens = prompt[0].tolist()
    for _ in range(NEW - 1):
        tokens.append(int(logits[-1].argmax(-1)))
        logits.append(decode(trained, cache, torch.tensor(tokens[-1:])))
    assert cache.layers[5].key is None  # decoding crossed P = 16: folded into the SSM state, buffer dropped
    with torch.no_grad():
        full = trained(torch.tensor([tokens]), transpoints=TRAINED)[0, PROMPT - 1 :]
        default = trained(torch.tensor([tokens]))[0, PROMPT - 1 :]
    cached = torch.cat(logits)
    err = (cached - full).abs().max() / full.abs().max()
    assert err < 1e-4, err
    torch.testing.assert_close(default, full, rtol=0, atol=0)  # the forward's default is the record too


def test_generate_uses_the_training_transpoints(trained) -> None:
    prompt = _prompt()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TransPointWarning)
        out = zoo.generate(trained, prompt, NEW)
        same = zoo.generate(trained, prompt, NEW, schedule={"name": "v9", "params": {"relative": True}})
        explicit = zoo.generate(trained, prompt, NEW, transpoints=TRAINED)
    seq = prompt
    with torch.no_grad():
        for _ in range(NEW):
            seq = torch.cat([seq, trained(seq, transpoints=TRAINED)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, seq[:, PROMPT:]) and torch.equal(same, out) and torch.equal(explicit, out)


def test_an_override_that_differs_warns_and_is_used(trained) -> None:
    prompt = _prompt()
    with pytest.warns(TransPointWarning, match=r"trained at \[0, 1, 2, 4, 8, 16\] \(seq_len 64\)"):
        out = zoo.generate(trained, prompt, NEW, transpoints=[0] * 6)
    seq = prompt
    with torch.no_grad():
        for _ in range(NEW):
            seq = torch.cat([seq, trained(seq, transpoints=[0] * 6)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, seq[:, PROMPT:])
    with pytest.warns(TransPointWarning, match="schedule v9"):
        zoo.generate(trained, prompt, 2, schedule="v9")  # absolute T=8192 values: all attention here
    with pytest.raises(zoo.ZooError, match="transpoints: give 6 values"):
        zoo.generate(trained, prompt, 2, transpoints=[0, 1])
    with pytest.raises(zoo.ZooError, match=r"params\.relative"):
        zoo.generate(trained, prompt, 2, schedule={"name": "v9", "params": {"relative": "yes"}})


def test_random_schedule_records_its_deterministic_counterpart() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["schedule"] = {"name": "random", "params": {"n_variants": 4, "eval_fractions": [0.0, 0.5]}}
    model = zoo.build(spec)
    Trainer(model, _task(32), _config()).train_step(3)
    record = model.trained_transpoints
    assert record.random and record.seq_len == 32 and list(record.transpoints) == [0, 16] * 3
    assert record.params["n_variants"] == 4 and record.params["fractions"]  # the distribution stays on record


def test_the_record_compiles_fullgraph_without_recompiles(trained) -> None:
    import torch._dynamo.testing

    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(trained, backend=counter, fullgraph=True)
    ids = torch.randint(0, 64, (1, PROMPT + NEW), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        first = compiled(ids)
        trained.record_training_transpoints(SEQ_LEN)  # the trainer re-records every step: same object
        again = compiled(ids)
        reference = trained(ids, transpoints=TRAINED)
    assert counter.frame_count == 1
    torch.testing.assert_close(first, reference, rtol=0, atol=0)
    torch.testing.assert_close(again, reference, rtol=0, atol=0)
