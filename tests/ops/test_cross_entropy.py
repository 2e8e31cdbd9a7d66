"""Chunked linear cross-entropy against the plain-logits reference: loss and both gradients."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from zoo.ops.cross_entropy import (
    chunked_linear_cross_entropy,
    chunked_linear_cross_entropy_and_hits,
    default_chunk_size,
    linear_cross_entropy_and_hits_reference,
    linear_cross_entropy_reference,
)
from zoo.testing import rel_err

IGNORE = -100
# (tokens, hidden, vocab, chunk): chunks that divide N, that do not, one token per chunk, one chunk
CASES = [(64, 16, 50, 16), (63, 16, 50, 16), (37, 8, 101, 5), (9, 8, 33, 1), (20, 12, 40, 64)]
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2}


def _case_id(case: tuple[int, int, int, int]) -> str:
    n, d, v, c = case
    return f"N{n}-D{d}-V{v}-C{c}"


def _inputs(n: int, d: int, v: int, dtype: torch.dtype, *, every_ignored: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=generator).to(dtype).requires_grad_()
    weight = (torch.randn(v, d, generator=generator) / d**0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=generator)
    targets[1::every_ignored] = IGNORE  # every k-th row from the second: some scored, some not
    return hidden, weight, targets


def _loss_and_grads(fn, hidden, weight, targets, **kwargs):
    loss = fn(hidden, weight, targets, **kwargs)
    # a cotangent other than 1: backward must scale the gradients saved in forward
    grads = torch.autograd.grad(loss * 1.7, (hidden, weight))
    return loss, *grads


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_chunked_matches_reference(case, dtype, reduction) -> None:
    n, d, v, chunk = case
    hidden, weight, targets = _inputs(n, d, v, dtype)
    assert (targets == IGNORE).any() and (targets != IGNORE).any()
    expected = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets, reduction=reduction)
    actual = _loss_and_grads(
        chunked_linear_cross_entropy, hidden, weight, targets, reduction=reduction, chunk_size=chunk
    )
    for name, got, want in zip(("loss", "d hidden", "d weight"), actual, expected, strict=True):
        assert got.dtype == want.dtype, name
        assert rel_err(got, want) <= TOLERANCE[dtype], (name, rel_err(got, want))
    # ignored rows get no gradient at all
    assert torch.equal(actual[1][targets == IGNORE], torch.zeros_like(actual[1][targets == IGNORE]))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_hits_match_the_argmax_of_the_full_logits(case) -> None:
    n, d, v, chunk = case
    hidden, weight, targets = _inputs(n, d, v, torch.float64)
    # a third of the scored rows made hits on purpose: the target is set to the row's argmax
    argmax = (hidden @ weight.T).argmax(-1)
    targets = torch.where((torch.arange(n) % 3 == 0) & (targets != IGNORE), argmax, targets)
    loss, hits = chunked_linear_cross_entropy_and_hits(hidden, weight, targets, reduction="sum", chunk_size=chunk)
    want_loss, want_hits = linear_cross_entropy_and_hits_reference(hidden, weight, targets, reduction="sum")
    expected = int(((targets != IGNORE) & (argmax == targets)).sum())
    assert expected > 0 and hits.dtype == torch.long
    assert int(hits) == int(want_hits) == expected
    assert rel_err(loss, want_loss) <= TOLERANCE[torch.float64]
    assert loss.grad_fn is None  # evaluation: no graph, even for inputs that require grad
    assert loss.item() == pytest.approx(chunked_linear_cross_entropy(hidden, weight, targets, reduction="sum").item())


def test_hits_never_count_ignored_rows() -> None:
    # identity head: a row's argmax is its largest hidden channel. Ignored rows point at token 0,
    # the target an ignored row is given inside the loop, so counting one would show
    weight = torch.eye(8, dtype=torch.float64)
    hidden = torch.randn(12, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hidden[::2] = 0.0
    hidden[::2, 0] = 5.0
    targets = hidden.argmax(-1)  # every row a hit ...
    assert (targets[::2] == 0).all()
    targets[::2] = IGNORE  # ... but half not scored
    for chunk in (1, 5, 12):
        _, hits = chunked_linear_cross_entropy_and_hits(hidden, weight, targets, chunk_size=chunk)
        assert int(hits) == 6


def test_hits_break_ties_as_argmax_does_at_the_first_maximum() -> None:
    weight = torch.eye(8, dtype=torch.bfloat16)
    weight[7] = weight[3]  # tokens 3 and 7 tie in every row
    hidden = torch.zeros(4, 8, dtype=torch.bfloat16)
    hidden[:, 3] = 1.0
    targets = torch.tensor([3, 7, 3, 7])
    _, hits = chunked_linear_cross_entropy_and_hits(hidden, weight, targets, chunk_size=3)
    _, want = linear_cross_entropy_and_hits_reference(hidden, weight, targets)
    assert int(hits) == int(want) == 2  # the first copy is the prediction, the second never


def test_bf16_within_bf16_tolerance_of_the_fp64_definition() -> None:
    hidden, weight, targets = _inputs(96, 32, 200, torch.bfloat16)
    exact = _loss_and_grads(
        linear_cross_entropy_reference, *(t.detach().double().requires_grad_() for t in (hidden, weight)), targets
    )
    actual = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, targets, chunk_size=40)
    assert [g.dtype for g in actual[1:]] == [torch.bfloat16, torch.bfloat16]
    for got, want in zip(actual, exact, strict=True):
        assert rel_err(got, want) <= TOLERANCE[torch.bfloat16]


def test_autocast_runs_the_matmuls_in_bf16_and_keeps_fp32_gradients() -> None:
    hidden, weight, targets = _inputs(70, 16, 64, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
        actual = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, targets, chunk_size=32)
    exact = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
    assert all(g.dtype == torch.float32 for g in actual)
    for got, want, fp32 in zip(actual, expected, exact, strict=True):
        assert rel_err(got, want) <= TOLERANCE[torch.bfloat16]
        assert rel_err(got, fp32) > 1e-6  # the matmuls did run in bf16


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_batch_is_zero_loss_and_zero_gradient(reduction) -> None:
    hidden, weight, targets = _inputs(10, 8, 20, torch.float32)
    targets.fill_(IGNORE)
    for fn in (linear_cross_entropy_reference, chunked_linear_cross_entropy):
        loss, grad_hidden, grad_weight = _loss_and_grads(fn, hidden, weight, targets, reduction=reduction)
        assert loss.item() == 0.0
        assert not grad_hidden.any() and not grad_weight.any()


def test_no_tokens_is_zero_loss_and_zero_gradient() -> None:
    hidden, weight, targets = _inputs(0, 8, 20, torch.float32)
    loss, grad_hidden, grad_weight = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, targets)
    assert loss.item() == 0.0 and grad_hidden.shape == (0, 8) and not grad_weight.any()


def test_without_grad_the_forward_only_loop_gives_the_same_loss() -> None:
    hidden, weight, targets = _inputs(50, 8, 30, torch.float64)
    with_grad = chunked_linear_cross_entropy(hidden, weight, targets, chunk_size=7)
    with torch.no_grad():
        without = chunked_linear_cross_entropy(hidden, weight, targets, chunk_size=7)
    assert with_grad.grad_fn is not None and without.grad_fn is None
    assert without.item() == pytest.approx(with_grad.item(), rel=1e-14)


def test_leading_dims_flatten_and_bad_arguments_are_refused() -> None:
    hidden, weight, targets = _inputs(24, 8, 30, torch.float64)
    flat = chunked_linear_cross_entropy(hidden, weight, targets, chunk_size=5)
    batched = chunked_linear_cross_entropy(hidden.reshape(2, 12, 8), weight, targets.reshape(2, 12), chunk_size=5)
    assert batched.item() == pytest.approx(flat.item(), rel=1e-14)
    with pytest.raises(ValueError, match="reduction must be"):
        chunked_linear_cross_entropy(hidden, weight, targets, reduction="none")
    with pytest.raises(ValueError, match="must match hidden"):
        chunked_linear_cross_entropy(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_linear_cross_entropy(hidden, weight, targets, chunk_size=0)


def test_default_chunk_size_bounds_the_chunk_logits() -> None:
    assert default_chunk_size(32000, 32768) == 2048  # 250 MiB of fp32 logits per chunk
    assert default_chunk_size(128256, 32768) == 512
    assert default_chunk_size(32000, 100) == 100
    assert default_chunk_size(10**9, 100) == 1
    for vocab in (100, 32000, 50257, 128256):
        chunk = default_chunk_size(vocab, 1 << 20)
        assert chunk * vocab * 4 <= 256 * 2**20 < 2 * chunk * vocab * 4


class _LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        return out


def test_no_tensor_as_large_as_the_logits_is_ever_made() -> None:
    n, d, v, chunk = 256, 8, 300, 32
    hidden, weight, targets = _inputs(n, d, v, torch.float32)
    with _LargestTensor() as chunked:
        _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, targets, chunk_size=chunk)
    with _LargestTensor() as plain:
        _loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
    assert plain.largest == n * v
    assert chunked.largest == chunk * v


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiles_fullgraph(backend) -> None:
    hidden, weight, targets = _inputs(2 * 21, 8, 30, torch.float32)
    compiled = torch.compile(chunked_linear_cross_entropy, backend=backend, fullgraph=True)
    actual = _loss_and_grads(compiled, hidden.reshape(2, 21, 8), weight, targets.reshape(2, 21), chunk_size=8)
    expected = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
    for got, want in zip(actual, expected, strict=True):
        assert rel_err(got.reshape(want.shape), want) <= TOLERANCE[torch.float32]


def test_compiled_under_autocast_matches_eager() -> None:
    """The autocast dtype is read while tracing, as eagerly: the compiled matmuls run in bf16 too."""
    hidden, weight, targets = _inputs(40, 16, 50, torch.float32)
    compiled = torch.compile(chunked_linear_cross_entropy, backend="eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = _loss_and_grads(compiled, hidden, weight, targets, chunk_size=16)
        expected = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, targets, chunk_size=16)
    for got, want in zip(actual, expected, strict=True):
        assert rel_err(got, want) <= 1e-6
    assert rel_err(actual[0], linear_cross_entropy_reference(hidden, weight, targets)) > 1e-6
