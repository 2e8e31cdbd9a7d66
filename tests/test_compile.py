"""The compile policy (zoo.compile): fullgraph everywhere, dynamo settings scoped to the
compiled region, one notice line. Cheap: the eager backend, or a graph break that raises
while dynamo traces, before any backend runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch._dynamo

import zoo
from zoo.compile import compile_in_place, compiled
from zoo.data import make_task
from zoo.inference import compile_prefill, compile_step
from zoo.training import TrainConfig, Trainer


class GraphBreakLM(torch.nn.Module):
    """The trainer's forward signature with a deliberate graph break."""

    def __init__(self, vocab_size: int = 64, d_model: int = 16) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        self.head = torch.nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: torch.Tensor, *, transpoints=None) -> torch.Tensor:
        hidden = self.embed(input_ids)
        torch._dynamo.graph_break()
        return self.head(hidden)


class Stack(torch.nn.Module):
    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _dynamo_config() -> dict:
    return torch._dynamo.config.get_config_copy()


def test_graph_break_raises_under_the_policy() -> None:
    model = compiled(GraphBreakLM(), what="a graph-breaking model", backend="eager")
    with pytest.raises(torch._dynamo.exc.Unsupported):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_trainer_compiles_fullgraph() -> None:
    task = make_task("mqar", seq_len=16, vocab_size=64, num_items=2, seed=0, eval_examples=8)
    trainer = Trainer(GraphBreakLM(), task, TrainConfig(steps=1, batch_size=2, progress=False, device="cpu"))
    inputs = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        trainer.loss(inputs, inputs)


def test_region_recompile_limit_leaves_the_global_one_alone() -> None:
    """More graphs than dynamo's default limit (8), fullgraph, in one region with its own limit."""

    def scaled(x: torch.Tensor, tag: str) -> torch.Tensor:
        return x * len(tag)

    before = _dynamo_config()
    fn = compiled(scaled, what="a function of a string", backend="eager", recompile_limit=16)
    for n in range(12):  # each string is a guard, so its own graph
        assert fn(torch.ones(2), "a" * n).sum().item() == 2 * n
    assert _dynamo_config() == before
    tight = compiled(lambda x, tag: x + len(tag), what="a tight region", backend="eager", recompile_limit=2)
    with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
        for n in range(4):
            tight(torch.ones(2), "b" * n)


def test_many_models_in_one_process_each_compile() -> None:
    """Unshared regions: the ninth differently built model does not hit the shared recompile limit."""
    for n_layers in range(1, 11):
        model = compile_in_place(Stack(n_layers), what="a stack", backend="eager")
        model(torch.ones(2, 4))


class TinyDecoder(torch.nn.Module):
    """``prefill``/``step`` with the engine's call signatures, a random TransPoint schedule for
    the trainer; cheap to trace."""

    schedule = SimpleNamespace(is_random=True, n_variants=56)

    def __init__(self, vocab_size: int = 64, d_model: int = 8) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        self.head = torch.nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: torch.Tensor, *, transpoints=None) -> torch.Tensor:
        return self.head(self.embed(input_ids))

    def prefill(self, input_ids: torch.Tensor, caches: list, start: int) -> torch.Tensor:
        return self(input_ids)

    def step(self, input_ids: torch.Tensor, caches: list, positions: torch.Tensor, phases: tuple) -> torch.Tensor:
        return self(input_ids) + positions[:, None, None]


def test_compiling_for_inference_and_training_leaves_dynamo_config_alone() -> None:
    before = _dynamo_config()
    model = TinyDecoder()
    tokens = torch.zeros(2, 5, dtype=torch.long)
    compile_prefill(model, backend="eager")(tokens, [], 0)
    compile_step(model, backend="eager")(tokens[:, :1], [], torch.zeros(2), ("attn",))
    task = make_task("mqar", seq_len=16, vocab_size=64, num_items=2, seed=0, eval_examples=8)
    Trainer(model, task, TrainConfig(steps=1, batch_size=2, progress=False, device="cpu"))
    built = zoo.build(
        {
            **zoo.resolve_spec("transmamba-tiny").model_dump(mode="json"),
            "compile": {"enabled": True, "backend": "eager"},
        },
        requires_grad=False,
    )
    assert built._compiled_call_impl is not None
    assert _dynamo_config() == before


def test_notice_is_one_line_once(capsys) -> None:
    compiled(torch.sin, what="sine for the notice test", backend="eager")
    compiled(torch.sin, what="sine for the notice test", backend="eager")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["compiling sine for the notice test (first call takes a while; --no-compile to skip)"]


def test_torch_without_region_limits_gets_a_process_wide_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before torch 2.13, torch.compile has no recompile_limit/isolate_recompiles: the options
    leave them out (passing them raises TypeError there) and dynamo's own limit is raised."""
    import torch._dynamo.config as dynamo_config

    import zoo.compile as policy

    monkeypatch.setattr(policy, "_REGION_LIMITS", False)
    # dynamo's own patch restores its config (a monkeypatch undo would delete, i.e. hide, the entry)
    with dynamo_config.patch(recompile_limit=8):
        options = policy.compile_options(backend="eager", recompile_limit=100)
        assert "recompile_limit" not in options and "isolate_recompiles" not in options
        assert dynamo_config.recompile_limit == 100
        policy.compile_options(backend="eager")  # never lowers it
        assert dynamo_config.recompile_limit == 100
    assert dynamo_config.recompile_limit == 8


def test_spec_options_make_transpoint_models_static() -> None:
    from zoo.compile import spec_options
    from zoo.specs import CompileSpec

    assert spec_options(CompileSpec(), static_lengths=True)["dynamic"] is False
    assert spec_options(CompileSpec())["dynamic"] is None
    assert spec_options(CompileSpec(dynamic=True), static_lengths=True)["dynamic"] is True  # the spec's word wins


@pytest.mark.parametrize("preset", ["transmamba-tiny", "transformer-tiny"])
def test_compiled_model_trains_at_a_second_and_third_length(preset: str) -> None:
    """Dynamo marks the length dynamic at the second length it sees; a TransMamba model's
    schedule arithmetic on a symbolic length used to fail there, so TransPoint models compile
    one static graph per shape. The dynamo half of compilation (aot_eager) is where it failed."""
    from zoo.training.runs import resolve_spec

    torch._dynamo.reset()
    spec = resolve_spec(preset)
    spec["layers"] = spec["layers"][:2]
    spec["compile"] = {**spec.get("compile", {}), "backend": "aot_eager"}
    model = zoo.build(spec, compile=True)
    for batch, seq_len in ((2, 40), (2, 48), (3, 56)):
        ids = torch.randint(0, 200, (batch, seq_len))
        loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
        loss.backward()
        assert torch.isfinite(loss)
