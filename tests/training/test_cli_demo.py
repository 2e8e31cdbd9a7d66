"""CLI commands and the demo, with the stand-in model in place of zoo.build."""

from __future__ import annotations

import argparse
import json

import pytest

import zoo.checkpoint
import zoo.errors
import zoo.training.demo
import zoo.training.runs
import zoo.training.trainer
from zoo.cli import compare as compare_cmd
from zoo.cli import eval as eval_cmd
from zoo.cli import train as train_cmd
from zoo.training import read_jsonl


@pytest.fixture
def fake_build(monkeypatch, standin):
    def build_for_task(ref, task, *, device=None, backends=None, strict=True, mlp_hidden=None, ssd_gate=None):
        return standin(vocab_size=task.vocab_size, d_model=16 if "small" in ref else 32)

    def load(path, **kwargs):
        checkpoint = zoo.checkpoint.open_checkpoint(path)
        spec = checkpoint.spec
        model = standin(vocab_size=spec["vocab_size"], d_model=spec["d_model"])
        zoo.checkpoint.load_model_state(model, checkpoint)
        return model

    monkeypatch.setattr(zoo.training.runs, "build_for_task", build_for_task)
    monkeypatch.setattr(zoo.training.demo, "build_for_task", build_for_task)
    # the stand-in's "spec" (zoo compare keys each journalled run by the spec it trains)
    monkeypatch.setattr(zoo.training.runs, "resolve_spec", lambda ref: {"name": ref, "layers": []})
    monkeypatch.setattr(zoo.checkpoint, "load", load)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (train_cmd, eval_cmd, compare_cmd):
        module.register(sub)
    return parser.parse_args(argv)


FAST = ("--no-compile", "--no-progress", "--device", "cpu")


@pytest.mark.slow
def test_train_resume_and_eval(tmp_path, fake_build, capsys) -> None:
    out = tmp_path / "run"
    common = (
        "m-tiny",
        "--task",
        "mqar",
        "--seq-len",
        "32",
        "--vocab",
        "32",
        "--num-items",
        "4",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--save-every",
        "3",
        *FAST,
    )
    args = _parse("train", *common, "--steps", "6")
    assert args.func(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["step"] == 6 and "eval_accuracy" in first
    args = _parse("train", *common, "--steps", "9", "--resume")
    assert args.func(args) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 10))
    capsys.readouterr()
    args = _parse("eval", str(out), "--device", "cpu")
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 9 and result["task"] == "mqar" and 0 <= result["eval_accuracy"] <= 1


def test_eval_warns_when_the_recorded_corpus_is_other_text_here(tmp_path, fake_build, capsys, monkeypatch) -> None:
    import zoo.data.corpora

    out = tmp_path / "run"
    train = ("m-tiny", "--data", "builtin:topics", "--seq-len", "32", "--steps", "1", "--batch-size", "2")
    args = _parse("train", *train, "--out", str(out), *FAST)
    assert args.func(args) == 0
    capsys.readouterr()
    args = _parse("eval", str(out), "--device", "cpu")
    assert args.func(args) == 0
    assert "warning" not in capsys.readouterr().err  # the same text: no warning
    # this machine's copy of the built-in corpus differs from the one the run trained on
    monkeypatch.setattr(zoo.data.corpora, "builtin_documents", lambda part="all": ["other text " * 2000])
    args = _parse("eval", str(out), "--device", "cpu")
    assert args.func(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo eval: warning: corpus 'builtin:topics' here is not the text")
    assert "validation" in err[0] and "--data" in err[0]


def test_eval_text_on_other_data(tmp_path, fake_build, capsys) -> None:
    out = tmp_path / "run"
    args = _parse(
        "train",
        "m-tiny",
        "--data",
        "builtin:topics",
        "--seq-len",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
        *FAST,
    )
    assert args.func(args) == 0
    other = tmp_path / "other.txt"
    other.write_text("completely different text " * 400)
    capsys.readouterr()
    args = _parse("eval", str(out), "--data", str(other), "--device", "cpu")
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["corpus"] == str(other) and result["eval_ppl"] > 1


@pytest.mark.slow
def test_compare_prints_table_and_writes_plot(tmp_path, fake_build, capsys) -> None:
    out = tmp_path / "cmp"
    args = _parse(
        "compare",
        "m-tiny",
        "m-small",
        "--task",
        "mqar",
        "--budget",
        "4",
        "--seq-len",
        "32",
        "--vocab",
        "32",
        "--num-items",
        "4",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--seeds",
        "1",
        "--out",
        str(out),
        *FAST,
    )
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "m-tiny" in table and "m-small" in table and "accuracy (chance)" in table
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["steps"] for r in rows] == [4, 4] and rows[0]["params"] != rows[1]["params"]
    pytest.importorskip("matplotlib")
    assert (out / "compare.png").stat().st_size > 1000


def _run_demo(out, stream, **settings):
    """The demo of the stand-in model on a CPU, eager, T = 32, with ``settings`` on top."""
    return zoo.training.demo.run_demo(
        out, preset="m-tiny", seq_len=32, compile=False, device="cpu", progress=False, stream=stream, **settings
    )


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, fake_build) -> None:
    pytest.importorskip("matplotlib")
    import io

    stream = io.StringIO()
    result = _run_demo(tmp_path / "demo", stream, steps=30, batch_size=8, lr=1e-2, sample_tokens=20)
    assert result.final_loss < result.baseline_loss
    assert (tmp_path / "demo" / "loss.png").stat().st_size > 1000
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["steps"] == 30
    assert "untrained" in stream.getvalue() and result.prompt in stream.getvalue()
    assert isinstance(result.sample, str)
    # a second demo into the same directory replaces the first, and says so
    stream = io.StringIO()
    _run_demo(tmp_path / "demo", stream, steps=10, batch_size=8, sample_tokens=5)
    assert f"replacing the earlier demo in {tmp_path / 'demo'}" in stream.getvalue()
    assert [p.name for p in zoo.checkpoint.list_checkpoints(tmp_path / "demo")] == ["step-00000010"]
    # a directory that holds another kind of run is not the demo's to replace
    (tmp_path / "demo" / "demo.json").unlink()
    with pytest.raises(zoo.errors.ZooError, match="holds a run that is not a demo's"):
        _run_demo(tmp_path / "demo", io.StringIO(), steps=10)
    assert zoo.checkpoint.list_checkpoints(tmp_path / "demo")


class FakeClock:
    """A ``time`` stand-in whose seconds pass only when a train step (0.75 s) or an evaluation
    (0.5 s) runs, so the budget logic is checked without reading the machine's clock."""

    STEP_S, EVAL_S = 0.75, 0.5

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_demo_time_budget_bounds_the_run(tmp_path, fake_build, monkeypatch) -> None:
    import io

    from zoo.training import Trainer

    clock = FakeClock()
    monkeypatch.setattr(zoo.training.trainer, "time", clock)
    monkeypatch.setattr(zoo.training.demo, "time", clock)
    train_step, evaluate = Trainer.train_step, Trainer.evaluate

    def timed_step(self, step):
        clock.now += clock.STEP_S
        return train_step(self, step)

    def timed_evaluate(self):
        clock.now += clock.EVAL_S
        return evaluate(self)

    monkeypatch.setattr(Trainer, "train_step", timed_step)
    monkeypatch.setattr(Trainer, "evaluate", timed_evaluate)
    result = _run_demo(tmp_path / "demo", io.StringIO(), minutes=0.5, batch_size=4, sample_tokens=5, plot=False)
    rows = read_jsonl(tmp_path / "demo" / "metrics.jsonl")
    evals = sum("eval_loss" in row for row in rows)
    # every fake second is a step or an evaluation: the untrained one, then those of the run
    assert result.elapsed_s == pytest.approx(result.steps * clock.STEP_S + (1 + evals) * clock.EVAL_S)
    # 30 s budget, less the untrained evaluation and the room kept for sampling: the run fills
    # it to within a few steps, not past it, and spaces about 8 evaluations over it
    assert 30.0 - 4 * clock.STEP_S <= result.elapsed_s <= 30.0
    assert 8 <= evals <= 9


def test_eager_eval_flag_turns_off_compiled_evaluation(standin) -> None:
    from zoo.data import make_task
    from zoo.training import Trainer

    default = train_cmd.config_from_args(_parse("train", "m-tiny"))
    eager = train_cmd.config_from_args(_parse("compare", "a", "b", "--eager-eval", "--device", "cpu"))
    assert default.compile and default.compile_eval is None  # None: compiled on CUDA, eager on CPU
    assert eager.compile and eager.compile_eval is False
    task = make_task("mqar", seq_len=32, vocab_size=64, num_items=4, seed=0, eval_examples=16)
    forced = eager.model_copy(update={"compile_eval": True})
    assert Trainer(standin(), task, forced).compile_eval is True
    assert Trainer(standin(), task, eager).compile_eval is False


def test_plot_rows_draws_a_compare_json(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    history = [{"step": s, "loss": 3.0 / s, **({"eval_loss": 2.5 / s} if s % 2 == 0 else {})} for s in range(1, 7)]
    rows = [{"model": "a", "history": history}, {"model": "b", "history": history[:4]}]
    path = compare_cmd.plot_rows(rows, tmp_path / "compare.png", accuracy=False)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
