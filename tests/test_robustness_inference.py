"""Generation arguments and memory estimates: bad input is one clear error before any allocation."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo import builder, memory
from zoo.errors import ZooError
from zoo.memory import MemoryLimitError

HUGE = {"d_model": 65536, "vocab_size": 10_000_000}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.build("transmamba-tiny", requires_grad=False).eval()


PROMPT = torch.tensor([[1, 2, 3]])
BAD_CALLS = [
    ("oov-id", {"input_ids": torch.tensor([[1, 10**6]])}, "vocabulary"),
    ("negative-id", {"input_ids": torch.tensor([[-1, 2]])}, "vocabulary"),
    ("float-ids", {"input_ids": torch.tensor([[1.0, 2.0]])}, "integer tensor"),
    ("empty", {"input_ids": torch.zeros(1, 0, dtype=torch.long)}, "T >= 1"),
    ("temperature-nan", {"temperature": math.nan}, "temperature"),
    ("temperature-inf", {"temperature": math.inf}, "temperature"),
    ("temperature-negative", {"temperature": -1.0}, "temperature"),
    ("greedy-top_p", {"top_p": 1.5}, "top_p"),
    ("top_p-nan", {"top_p": math.nan, "temperature": 1.0}, "top_p"),
    ("greedy-top_k", {"top_k": -3}, "top_k"),
    ("top_k-bool", {"top_k": True}, "top_k"),
    ("eos-outside", {"eos_id": 10**6}, "eos_id"),
    ("eos-negative", {"eos_id": -1}, "eos_id"),
    ("max-new-zero", {"max_new_tokens": 0}, "max_new_tokens"),
    ("max-new-float", {"max_new_tokens": 2.5}, "max_new_tokens"),
    ("lengths-long", {"lengths": [4]}, "lengths"),
    ("lengths-count", {"lengths": [1, 2]}, "lengths"),
    ("seed-negative", {"seed": -1}, "seed"),
]


@pytest.mark.parametrize("name,kwargs,field", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_generate_argument_is_named(model, name: str, kwargs: dict, field: str) -> None:
    call = {"input_ids": PROMPT, "max_new_tokens": 2, **kwargs}
    with pytest.raises(ZooError, match=field):
        zoo.generate(model, call.pop("input_ids"), call.pop("max_new_tokens"), **call)


def test_good_arguments_still_generate(model) -> None:
    out = zoo.generate(model, PROMPT, 3, temperature=0.7, top_k=5, top_p=0.9, seed=1, eos_id=0, lengths=[2])
    assert out.shape == (1, 3)


def test_huge_max_new_tokens_is_refused_before_allocating(model, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 << 30)
    allocated = []
    original = type(model).allocate_cache

    def recording(self, *args, **kwargs):
        allocated.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "allocate_cache", recording)
    with pytest.raises(MemoryLimitError, match=r"needs about .*GiB.*8\.0 GiB available.*allow_large"):
        zoo.generate(model, PROMPT, 1_000_000_000)
    assert allocated and all(k.get("device") == "meta" for k in allocated)  # only the estimate was "allocated"


def test_cache_estimate_is_exact(model) -> None:
    cache = model.allocate_cache(2, 40)
    assert memory.cache_bytes(model, 2, 40) == memory.tensor_bytes(cache) > 0
    assert memory.tensor_bytes(cache) == sum(t.numel() * t.element_size() for t in _tensors(cache))


def test_cache_estimate_follows_the_transpoint_override(model, monkeypatch) -> None:
    """An all-attention override holds every position's K/V: the estimate sizes that cache."""
    n = 4000  # default TransPoints at ~4K keep most layers in SSM mode: a small cache
    default = memory.cache_bytes(model, 1, PROMPT.shape[1] + n)
    attention = [PROMPT.shape[1] + n] * model.n_layers
    assert memory.cache_bytes(model, 1, PROMPT.shape[1] + n, transpoints=attention) > 4 * default
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * default)
    sampling_check = zoo.inference.sampling.check_generation_args
    sampling_check(model, PROMPT, n)  # the default schedule fits
    with pytest.raises(MemoryLimitError, match="inference cache"):
        sampling_check(model, PROMPT, n, transpoints=attention)
    with pytest.raises(MemoryLimitError, match="inference cache"):
        sampling_check(model, PROMPT, n, schedule="paper_transformer")


def _tensors(obj) -> list[torch.Tensor]:
    found = {}
    for layer in obj.layers:
        for value in vars(layer).values():
            if isinstance(value, torch.Tensor):
                found[id(value)] = value
    found[id(obj.positions)] = obj.positions
    return list(found.values())


def test_model_estimate_matches_the_built_model() -> None:
    built = zoo.build("transmamba-tiny")
    numel = built.num_parameters() + sum(b.numel() for b in built.buffers())
    assert builder.model_bytes("transmamba-tiny") == 4 * numel
    assert builder.model_bytes("transmamba-tiny", torch.bfloat16) == 6 * numel


def test_huge_spec_is_refused_by_build_and_load(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 << 30)
    spec = {**zoo.resolve_spec("transmamba-tiny").model_dump(mode="json"), **HUGE}
    with pytest.raises(MemoryLimitError, match=r"TiB, cpu has 64\.0 GiB"):
        zoo.build(spec)
    zoo.build(spec, device="meta")  # meta allocates nothing: never refused

    from zoo import checkpoint as ckpt

    small = zoo.build("transmamba-tiny")
    path = ckpt.save_checkpoint(tmp_path, 1, model=small, spec=spec)
    with pytest.raises(MemoryLimitError):
        zoo.load(path)


def test_estimate_needs_no_backward_support() -> None:
    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    spec["layers"][2]["mixer"]["attention"] = {"name": "flex"}  # no backward on CPU: inference only
    assert builder.model_bytes(spec) > 0
    assert not any(p.requires_grad for p in zoo.build(spec, requires_grad=False).parameters())


def test_allow_large_skips_the_refusal(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    with pytest.raises(MemoryLimitError):
        zoo.build("transmamba-tiny")
    assert zoo.build("transmamba-tiny", allow_large=True) is not None


def test_cli_generate_huge_is_one_line(tmp_path, capsys) -> None:
    from zoo.cli import main

    code = main(["generate", "transmamba-tiny", "--prompt", "hi", "--max-new-tokens", str(10**12), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--allow-large" in err and len(err.strip().splitlines()) == 1
