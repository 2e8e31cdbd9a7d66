"""Models and checks the recompute tests share (imported by module name; see conftest.py):
presets and specs built under seed 0, a loss with every parameter's gradient, and the
comparison of two such results."""

from __future__ import annotations

import torch

import zoo


def seeded_preset(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.build(preset)


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor):
    loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1).float(), ids.flatten())
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


def compile_with_aot_eager(monkeypatch) -> None:
    """fullgraph compile through dynamo, the joint graph and its partition, without codegen."""
    import zoo.compile

    options = zoo.compile.compile_options
    monkeypatch.setattr(zoo.compile, "compile_options", lambda **kw: options(**{**kw, "backend": "aot_eager"}))


def assert_same_numbers(results, *, exact_loss: bool = False) -> None:
    """The second (loss, grads) against the first, to fp32 rounding (``exact_loss``: the same
    ops in the same order, so the loss bit for bit and the gradients to tighter rounding)."""
    loss_tol, grad_tol = ((0, 0), (1e-6, 1e-7)) if exact_loss else ((1e-6, 1e-6), (1e-5, 1e-6))
    _assert_close(results, loss_tol, grad_tol)


def _assert_close(results, loss_tol: tuple[float, float], grad_tol: tuple[float, float]) -> None:
    """The second (loss, grads) against the first: the loss within ``loss_tol`` and every
    gradient within ``grad_tol`` (each ``(rtol, atol)``)."""
    (loss, grads), (other_loss, other_grads) = results
    torch.testing.assert_close(other_loss, loss, rtol=loss_tol[0], atol=loss_tol[1])
    for name, grad in grads.items():
        torch.testing.assert_close(other_grads[name], grad, rtol=grad_tol[0], atol=grad_tol[1], msg=name)


def count_checkpoints(monkeypatch) -> list[int]:
    """A one-element list that counts calls of torch.utils.checkpoint.checkpoint from now on."""
    calls = [0]
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    return calls


def seeded_build(spec: dict, layers: int | None) -> torch.nn.Module:
    """The spec (its first ``layers`` blocks, if given) built under seed 0."""
    if layers is not None:
        spec["layers"] = spec["layers"][:layers]
    torch.manual_seed(0)
    return zoo.build(spec)


def with_backend(preset: str, slot: str, value: str, *, layers: int | None = None) -> torch.nn.Module:
    from zoo.overrides import spec_with_backends
    from zoo.training.runs import resolve_spec

    return seeded_build(spec_with_backends(resolve_spec(preset), {slot: value})[0], layers)


def with_norm_output(preset: str, output: str, *, layers: int | None = None) -> torch.nn.Module:
    return with_backend(preset, "norm", f"torch:output={output}", layers=layers)


def assert_equal_within(results, *, rtol: float, atol: float) -> None:
    """The second (loss, grads) against the first, loss and every gradient within the same
    ``rtol`` / ``atol`` (0 and 0: bit for bit)."""
    _assert_close(results, (rtol, atol), (rtol, atol))


def save_then_recompute(build, monkeypatch):
    """``(saved, recomputed, model, calls)``: loss and gradients of ``build("save")`` and of
    ``build("recompute")`` (``model``) on the same ids, and the checkpoint calls made from the
    second build on."""
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    saved = loss_and_grads(build("save"), ids)
    calls = count_checkpoints(monkeypatch)
    model = build("recompute")
    return saved, loss_and_grads(model, ids), model, calls[0]
