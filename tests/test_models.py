"""Models and presets: every preset builds; tiny presets compile with fullgraph=True and match eager."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import BackendUnsupportedError, SpecError
from zoo.registry import PRESET

ARCHS = ("transmamba", "transformer", "mamba2", "hybrid")


@pytest.mark.parametrize("name", PRESET.names())
def test_every_preset_builds_on_meta(name) -> None:
    model = zoo.build(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    n = model.num_parameters()
    size = name.rsplit("-", 1)[1]
    lo, hi = {"tiny": (1e6, 3e6), "small": (15e6, 40e6), "400m": (3e8, 5.5e8), "1.5b": (1.2e9, 1.9e9)}[size]
    assert lo <= n <= hi, f"{name}: {n:,} parameters outside [{lo:,.0f}, {hi:,.0f}]"


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_forward_and_backward(arch) -> None:
    model = zoo.build(f"{arch}-tiny")
    ids = torch.randint(0, model.spec.vocab_size, (2, 45))
    logits = model(ids)
    assert logits.shape == (2, 45, model.spec.vocab_size) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # an untrained model is close to uniform over the vocabulary
    assert abs(loss.item() - torch.log(torch.tensor(float(model.spec.vocab_size))).item()) < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_compiles_fullgraph_and_matches_eager(arch) -> None:
    torch._dynamo.reset()
    model = zoo.build(f"{arch}-tiny")
    ids = torch.randint(0, model.spec.vocab_size, (2, 40))
    with torch.no_grad():
        expected = model(ids)
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        actual = compiled(ids)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_compile_matches_eager() -> None:
    torch._dynamo.reset()
    # two layers keep the cold inductor compile short on a 2-core CPU; P inside the sequence
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["layers"] = spec["layers"][:2]
    spec["schedule"] = {"name": "cyclic", "params": {"fractions": [0.25, 0.75]}}
    model = zoo.build(spec, compile=True)
    reference = zoo.build(spec)
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 260, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids), rtol=1e-4, atol=1e-4)


def test_tied_embeddings_and_state_dict_keys() -> None:
    model = zoo.build("transmamba-tiny", compile=False)
    assert model.lm_head.weight is model.embedding.weight
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


def test_dtype_and_schedule_override() -> None:
    model = zoo.build("mamba2-tiny", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    tm = zoo.build("transmamba-tiny")
    assert tm.transpoints_for(8192) == [0, 128, 256, 512, 1024, 2048]
    ids = torch.randint(0, 260, (1, 16))
    with torch.no_grad():
        a = tm(ids, transpoints=[0] * 6)
        b = tm(ids, transpoints=[16] * 6)
    assert not torch.allclose(a, b)


def test_build_reports_backend_reason() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["layers"][2]["mixer"]["attention"] = {"name": "flex"}
    with pytest.raises(BackendUnsupportedError, match=r"layers\.2\.mixer\.attention.*backward"):
        zoo.build(spec)  # FlexAttention has no backward on CPU
    frozen = zoo.build(spec, requires_grad=False)  # inference: no backward needed, none recorded
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in zoo.build("transmamba-tiny").parameters())


def test_unknown_preset_message() -> None:
    with pytest.raises(SpecError, match="transmamba-tiny"):
        zoo.build("transmamba-tinny")
