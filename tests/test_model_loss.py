"""CausalLM.forward with targets: the chunked loss inside the model equals the loss of its logits."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import zoo
import zoo.models.lm as lm
from zoo.errors import ZooError
from zoo.ops.cross_entropy import chunked_linear_cross_entropy, chunked_linear_cross_entropy_and_hits
from zoo.testing import rel_err

IGNORE = -100


def _batch(vocab: int, batch: int = 2, seq_len: int = 19):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    targets = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    targets[:, ::3] = IGNORE
    return inputs, targets


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (loss * 1.3).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 5 tokens, so the model's loss crosses chunk boundaries at this tiny size."""
    five = functools.partial(chunked_linear_cross_entropy, chunk_size=5)
    monkeypatch.setattr(lm, "chunked_linear_cross_entropy", five)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("preset", ["transmamba-tiny", "transformer-tiny"], ids=["tied", "untied"])
def test_loss_and_gradients_match_the_logits_path(preset, reduction, small_chunks) -> None:
    torch.manual_seed(0)
    model = zoo.build(preset, compile=False)
    assert model.spec.tie_embeddings == (preset == "transmamba-tiny")
    if model.spec.tie_embeddings:
        assert model.lm_head.weight is model.embedding.weight
    inputs, targets = _batch(model.spec.vocab_size)
    logits = model(inputs).float()
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction=reduction)
    expected_grads = _grads(model, expected)
    loss = model(inputs, targets=targets, loss_reduction=reduction)
    assert loss.shape == () and loss.dtype == torch.float32
    assert rel_err(loss, expected) <= 1e-5
    grads = _grads(model, loss)
    assert grads.keys() == expected_grads.keys() and "embedding.weight" in grads
    for name, grad in grads.items():
        assert rel_err(grad, expected_grads[name]) <= 1e-5, name


def test_targets_must_match_the_inputs() -> None:
    model = zoo.build("transmamba-tiny", compile=False)
    inputs, targets = _batch(model.spec.vocab_size)
    with pytest.raises(ZooError, match="one target per input position"):
        model(inputs, targets=targets[:, :-1])


@pytest.mark.parametrize("preset", ["transmamba-tiny", "transformer-tiny"], ids=["tied", "untied"])
def test_count_hits_is_the_accuracy_of_the_logits(preset, monkeypatch) -> None:
    five = functools.partial(chunked_linear_cross_entropy_and_hits, chunk_size=5)  # chunk boundaries at this size
    monkeypatch.setattr(lm, "chunked_linear_cross_entropy_and_hits", five)
    torch.manual_seed(0)
    model = zoo.build(preset, compile=False)
    inputs, targets = _batch(model.spec.vocab_size)
    with torch.no_grad():
        logits = model(inputs).float()
        scored = targets != IGNORE
        predicted = logits.argmax(-1)
        targets = torch.where(scored & (torch.arange(targets.shape[1]) % 2 == 0), predicted, targets)  # some hits
        expected_hits = int((scored & (predicted == targets)).sum())
        expected_loss = F.cross_entropy(logits[scored], targets[scored], reduction="sum")
        loss, hits = model(inputs, targets=targets, loss_reduction="sum", count_hits=True)
    assert expected_hits > 0 and int(hits) == expected_hits
    assert rel_err(loss, expected_loss) <= 1e-5
    with pytest.raises(ZooError, match="pass targets too"):
        model(inputs, count_hits=True)


def test_compiles_fullgraph_with_targets(small_chunks) -> None:
    torch.manual_seed(0)
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["layers"] = spec["layers"][:1]  # one layer: the loss is what is traced here, and it traces 6x faster
    model = zoo.build(spec, compile=False)
    assert model.lm_head.weight is model.embedding.weight
    inputs, targets = _batch(model.spec.vocab_size)
    eager = model(inputs, targets=targets)
    eager_grads = _grads(model, eager)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    loss = compiled(inputs, targets=targets)
    assert rel_err(loss, eager) <= 1e-6
    grads = _grads(model, loss)
    for name, grad in grads.items():
        assert rel_err(grad, eager_grads[name]) <= 1e-6, name
    with torch.no_grad():  # the forward-only loop traces too
        assert rel_err(compiled(inputs, targets=targets), eager) <= 1e-6
