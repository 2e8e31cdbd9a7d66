"""``zoo compare``: seeds, learning-rate sweep, t-intervals, tables with the chance floor."""

from __future__ import annotations

import argparse
import json
import math

import pytest

import zoo.training.runs
from zoo.cli import compare as compare_cmd
from zoo.cli import compare_report
from zoo.errors import ZooError
from zoo.training.stats import significant, t_interval, t_quantile_975


def test_t_interval_matches_the_textbook() -> None:
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(4.303 / math.sqrt(3))
    assert t_interval([5.0]).half_width is None and t_interval([5.0]).format() == "5.000"
    assert significant(100.0, 1) == "1e+02" and significant(-0.0, 3) == "0.00" and significant(9.9996, 4) == "10.00"
    assert significant(1234.5, 4) == "1234" and significant(0.0995, 2) == "0.10"
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(31) == pytest.approx(2.040, abs=1e-3)  # expansion continues the table
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def _rows() -> list[dict]:
    rows = []
    for model, lr, losses in (("a", 1e-3, [2.0, 2.2, 2.1]), ("a", 1e-2, [1.0, 1.2, 1.1]), ("b", 1e-3, [3.0, 3.0, 3.3])):
        for seed, loss in enumerate(losses):
            rows.append(
                {"model": model, "lr": lr, "seed": seed, "params": 100, "tokens": 640, "eval_loss": loss,
                 "eval_accuracy": 1 / loss, "eval_chance": 0.25, "final_loss": loss, "tokens_per_s": 10}
            )  # fmt: skip
    rows.append({**rows[0], "lr": 1e-1, "eval_loss": float("nan")})  # a diverged run is never the best
    return rows


def test_summary_picks_the_best_lr_by_mean_validation_loss() -> None:
    summary, sweep = compare_cmd.summarise(_rows())
    assert [(cell["model"], cell["lr"]) for cell in summary] == [("a", 1e-2), ("b", 1e-3)]
    assert len(sweep) == 4
    loss = summary[0]["eval_loss"]
    assert loss["per_seed"] == [1.0, 1.2, 1.1] and loss["mean"] == pytest.approx(1.1)
    assert loss["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    table = compare_cmd.markdown_table(summary, accuracy=True)
    assert "(chance 0.25)" in table and "accuracy (chance)" in table and "| a | 100 | 0.01 | 3 |" in table


def test_the_sweep_table_shows_every_rate_with_the_chosen_one_in_bold() -> None:
    summary, sweep = compare_cmd.summarise(_rows())
    table = compare_cmd.sweep_table(summary, sweep, accuracy=False)
    assert "| model | lr 0.001 | lr 0.01 | lr 0.1 |" in table
    assert "| a | 2.100 ± 0.25 | **1.100 ± 0.25** | nan |" in table
    assert "| b | **3.100 ± 0.43** | - | - |" in table
    with_accuracy = compare_cmd.sweep_table(summary, sweep, accuracy=True)
    assert "**1.100 ± 0.25, accuracy 0.914 ± 0.21**" in with_accuracy
    one_rate = [row for row in _rows() if row["lr"] == 1e-3]
    assert compare_cmd.sweep_table(*compare_cmd.summarise(one_rate), accuracy=False) is None


def test_parameter_note_flags_unmatched_models() -> None:
    assert compare_cmd.parameter_note([{"params": 100}, {"params": 101}]) is None
    assert "not parameter-matched" in compare_cmd.parameter_note([{"params": 100}, {"params": 110}])


def test_bad_lrs_are_one_line() -> None:
    assert compare_cmd.parse_lrs("3e-3,1e-3", 0.1) == [1e-3, 3e-3]
    assert compare_cmd.parse_lrs(None, 0.1) == [0.1]
    for text in ("fast", "0,1e-3", "", "nan"):
        with pytest.raises(ZooError, match="--lrs"):
            compare_cmd.parse_lrs(text, 0.1)


@pytest.fixture
def fake_build(monkeypatch, standin):
    def build_for_task(ref, task, *, device=None, backends=None, strict=True, mlp_hidden=None, ssd_gate=None):
        return standin(vocab_size=task.vocab_size, d_model=16 if "small" in ref else 32)

    monkeypatch.setattr(zoo.training.runs, "build_for_task", build_for_task)
    # the stand-in's "spec" (the journal keys a run by the spec it trains)
    monkeypatch.setattr(zoo.training.runs, "resolve_spec", lambda ref: {"name": ref, "layers": []})


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo")
    compare_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.slow
def test_compare_runs_every_seed_and_lr(tmp_path, fake_build, capsys) -> None:
    parser = _compare_parser()
    out = tmp_path / "cmp"
    argv = ["compare", "m-tiny", "m-small", "--task", "induction", "--seq-len", "16", "--vocab", "16"]
    argv += ["--budget", "2", "--batch-size", "32", "--seeds", "2", "--lrs", "1e-3,1e-2", "--eval-every", "1"]
    argv += ["--no-compile", "--no-progress", "--device", "cpu", "--out", str(out)]
    args = parser.parse_args(argv)
    args.no_plot = not _has_matplotlib()
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "m-tiny" in table and "(chance " in table
    record = json.loads((out / "compare.json").read_text())
    runs = {(r["model"], r["lr"], r["seed"]) for r in record["rows"]}
    assert runs == {(m, lr, s) for m in ("m-tiny", "m-small") for lr in (1e-3, 1e-2) for s in (0, 1)}
    assert all(r["tokens"] == 2 * 32 * 16 for r in record["rows"])
    assert {len(cell["eval_accuracy"]["per_seed"]) for cell in record["summary"]} == {2}
    assert (out / "compare.md").read_text().startswith("| model |")
    if not args.no_plot:
        assert (out / "compare.png").stat().st_size > 1000
    lines = (out / "compare.json").read_text().splitlines()
    steps = sum(len(r["history"]) for r in record["rows"])
    assert steps >= 2 * 8 and sum(line.startswith('{"step":') for line in lines) == steps  # one line per step
    assert not list(out.glob(".*tmp*"))  # written through a temporary file, none left behind


def test_the_record_keeps_every_value_with_one_line_per_history_point() -> None:
    history = [{"step": 1, "loss": 0.1234567890123, "note": "history-0"}, {"step": 2, "loss": None}]
    record = {
        "argv": ["compare", "history-0"],
        "rows": [{"model": "m", "history": history}, {"model": "n", "history": []}],
    }
    text = compare_cmd.record_json(record)
    assert json.loads(text) == record
    assert '{"step":1,"loss":0.1234567890123,' in text and '{"step":2,"loss":null}' in text


def test_thinned_curves_keep_the_ends_and_every_evaluation() -> None:
    history = [{"step": i, "loss": float(i)} for i in range(1, 1001)]
    for i in (250, 333, 1000):
        history[i - 1]["eval_loss"] = 1.0 / i
    thin = compare_report.thin_history(history, max_points=100)
    steps = [p["step"] for p in thin]
    assert steps[0] == 1 and steps[-1] == 1000 and {250, 333} <= set(steps)
    assert steps == sorted(steps) and 100 <= len(thin) <= 103
    assert all(p is history[p["step"] - 1] for p in thin)  # whole points, never averaged
    assert compare_report.thin_history(history[:50], max_points=100) == history[:50]
    rows = [{"model": "m", "history": history}, {"model": "diverged"}]
    thinned = compare_report.thin_rows(rows, max_points=100)
    assert thinned[0]["history"] == thin and thinned[1] == rows[1] and len(rows[0]["history"]) == 1000


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_merge_summarises_earlier_runs_and_refuses_unlike_ones(tmp_path, capsys) -> None:
    parser = _compare_parser()
    rows = [{**row, "task": {"task": "mqar", "seq_len": 32}} for row in _rows()]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"rows": [r for r in rows if r["model"] == "a"]}))
    second.write_text(json.dumps({"rows": [r for r in rows if r["model"] == "b"]}))
    args = parser.parse_args(["compare", "--merge", str(first), str(second), "--out", str(tmp_path / "m"), "--no-plot"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "| a | 100 | 0.01 | 3 |" in table and "| b | 100 | 0.001 | 3 |" in table
    assert len(json.loads((tmp_path / "m" / "compare.json").read_text())["rows"]) == len(rows)
    second.write_text(json.dumps({"rows": [{**rows[-2], "tokens": 999}]}))
    with pytest.raises(ZooError, match="differ in tokens"):
        args.func(args)
    args = parser.parse_args(["compare", "m-tiny", "--merge", str(first)])
    with pytest.raises(ZooError, match="one of the two"):
        args.func(args)


def test_merge_refuses_a_run_given_twice(tmp_path) -> None:
    # The same (model, lr, seed) twice would count one seed as two and narrow the interval.
    parser = _compare_parser()
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"rows": [{**row, "task": {"task": "mqar"}} for row in _rows()]}))
    args = parser.parse_args(["compare", "--merge", str(path), str(path), "--out", str(tmp_path / "m"), "--no-plot"])
    with pytest.raises(ZooError, match="model a, lr 0.001, seed 0"):
        args.func(args)


def test_merge_refuses_one_label_for_two_models(tmp_path) -> None:
    parser = _compare_parser()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    rows = [{**row, "task": {"task": "mqar"}} for row in _rows() if row["model"] == "a"]
    first.write_text(json.dumps({"rows": [r for r in rows if r["lr"] == 1e-3]}))
    second.write_text(json.dumps({"rows": [{**r, "params": 200} for r in rows if r["lr"] == 1e-2]}))
    args = parser.parse_args(["compare", "--merge", str(first), str(second), "--out", str(tmp_path / "m"), "--no-plot"])
    with pytest.raises(ZooError, match="model a.*100.*200"):
        args.func(args)


def test_compare_refuses_two_models_with_one_label(tmp_path) -> None:
    # Both would be named "transformer": their seeds would pool into one row and one run directory.
    parser = _compare_parser()
    argv = ["compare", "x/transformer.json", "y/transformer.json", "--task", "mqar", "--seq-len", "32"]
    argv += ["--out", str(tmp_path)]
    with pytest.raises(ZooError, match="transformer.*LABEL=REF"):
        compare_cmd.compare(parser.parse_args(argv))


def _small_compare(out, *extra: str) -> argparse.Namespace:
    argv = ["compare", "m-tiny", "--task", "induction", "--seq-len", "16", "--vocab", "16", "--budget", "2"]
    argv += ["--batch-size", "4", "--seeds", "2", "--no-compile", "--no-progress", "--device", "cpu"]
    argv += ["--out", str(out), "--no-plot", *extra]
    return _compare_parser().parse_args(argv)


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, fake_build, monkeypatch, capsys) -> None:
    from zoo.training.checkpointing import NonFiniteLossError
    from zoo.training.trainer import Trainer

    fit = Trainer.fit

    def diverge_at_high_lr(self, **kwargs):
        if self.config.lr > 5e-3 and self.config.seed == 1:
            self.step = 1
            raise NonFiniteLossError("training diverged: loss is nan at step 1")
        return fit(self, **kwargs)

    monkeypatch.setattr(Trainer, "fit", diverge_at_high_lr)
    args = _small_compare(tmp_path / "cmp", "--lrs", "1e-3,1e-2")
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "[m-tiny lr=0.01 seed=1] diverged: training diverged" in captured.err
    record = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    diverged = [r for r in record["rows"] if r.get("diverged")]
    assert [(r["lr"], r["seed"], r["steps"]) for r in diverged] == [(1e-2, 1, 1)]
    assert "eval_loss" not in diverged[0]
    # One diverged seed rules that learning rate out, whatever the other seed scored.
    assert [(cell["lr"], cell["diverged"]) for cell in record["summary"]] == [(1e-3, 0)]
    assert sorted((cell["lr"], cell["diverged"]) for cell in record["sweep"]) == [(1e-3, 0), (1e-2, 1)]
    table = compare_cmd.markdown_table(record["sweep"], accuracy=True)
    assert "| 2 (1 diverged) |" in table


def test_an_interrupted_comparison_keeps_its_finished_runs(tmp_path, fake_build, monkeypatch, capsys) -> None:
    from zoo.training.trainer import Trainer

    out = tmp_path / "cmp"
    fit, trained = Trainer.fit, []

    def interrupted_after_one_run(self, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append((self.config.lr, self.config.seed))
        return fit(self, **kwargs)

    monkeypatch.setattr(Trainer, "fit", interrupted_after_one_run)
    with pytest.raises(KeyboardInterrupt):
        compare_cmd.compare(_small_compare(out))
    assert trained == [(3e-3, 0)]
    first = [json.loads(line)["row"] for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["steps"]) for r in first] == [(0, 2)]
    # A line cut short by a kill is ignored.
    with (out / "runs.jsonl").open("a") as f:
        f.write('{"settings": {"model": "m-ti')

    def record_fit(self, **kwargs):
        trained.append((self.config.lr, self.config.seed))
        return fit(self, **kwargs)

    monkeypatch.setattr(Trainer, "fit", record_fit)
    trained.clear()
    rows = compare_cmd.compare(_small_compare(out))
    assert trained == [(3e-3, 1)]  # seed 0 is reused, seed 1 trains
    assert rows[0] == first[0] and [r["seed"] for r in rows] == [0, 1]
    assert "[m-tiny lr=0.003 seed=0] finished earlier: reused from" in capsys.readouterr().err
    # The run after the cut line went on a line of its own: a third time trains nothing.
    trained.clear()
    assert compare_cmd.compare(_small_compare(out)) == rows and trained == []
    # Other settings are other runs: nothing is reused.
    trained.clear()
    compare_cmd.compare(_small_compare(out, "--weight-decay", "0.05"))
    assert trained == [(3e-3, 0), (3e-3, 1)]


def test_merge_reads_the_journal_of_a_comparison_cut_short(tmp_path, capsys) -> None:
    journal = tmp_path / "runs.jsonl"
    rows = [{**row, "task": {"task": "mqar"}} for row in _rows() if row["model"] == "a" and row["lr"] == 1e-3]
    lines = [json.dumps({"settings": {"seed": r["seed"]}, "row": r}) for r in rows]
    journal.write_text("\n".join(lines) + '\n{"settings": {"se')  # the last line cut by a kill
    parser = _compare_parser()
    args = parser.parse_args(["compare", "--merge", str(journal), "--out", str(tmp_path / "m"), "--no-plot"])
    assert args.func(args) == 0
    assert "| a | 100 | 0.001 | 3 |" in capsys.readouterr().out
    args = parser.parse_args(["compare", "--merge", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "m")])
    with pytest.raises(ZooError, match="none.jsonl: not a readable compare.json or runs.jsonl"):
        args.func(args)


def test_a_rate_with_a_diverged_seed_is_never_chosen_even_with_the_lower_mean() -> None:
    rows = [{**row, "lr": 1e-2} if row["model"] == "b" else row for row in _rows() if row["lr"] != 1e-1]
    # model b: 1e-3 scores 3.1 on average; 1e-2's two surviving seeds score 0.5, one diverged
    rows += [{**rows[0], "model": "b", "lr": 1e-3, "seed": s, "eval_loss": 3.1} for s in range(3)]
    rows = [r for r in rows if not (r["model"] == "b" and r["lr"] == 1e-2)]
    rows += [{**rows[0], "model": "b", "lr": 1e-2, "seed": s, "eval_loss": 0.5} for s in range(2)]
    rows.append({"model": "b", "lr": 1e-2, "seed": 2, "params": 100, "tokens": 640, "diverged": "loss is nan"})
    summary, sweep = compare_cmd.summarise(rows)
    assert [(cell["model"], cell["lr"]) for cell in summary] == [("a", 1e-2), ("b", 1e-3)]
    diverged = next(cell for cell in sweep if cell["model"] == "b" and cell["lr"] == 1e-2)
    assert diverged["diverged"] == 1 and diverged["eval_loss"]["mean"] == 0.5


def test_a_journal_with_one_run_under_two_settings_is_refused_with_the_reason(tmp_path) -> None:
    row = {**_rows()[0], "task": {"task": "mqar"}}
    journal = tmp_path / "runs.jsonl"
    journal.write_text("".join(json.dumps({"settings": {"wd": wd}, "row": row}) + "\n" for wd in (0.1, 0.05)))
    args = _compare_parser().parse_args(["compare", "--merge", str(journal), "--out", str(tmp_path / "m")])
    with pytest.raises(ZooError, match="appears twice.*runs.jsonl that served commands with different settings"):
        args.func(args)


def _warmup_rows() -> list[dict]:
    """Model a at lr 1e-2 under two warm-ups (200 scores better), model b at one."""
    base = {"params": 100, "tokens": 640, "eval_accuracy": 0.5, "eval_chance": 0.25}
    rows = [{**base, "model": "a", "lr": 1e-2, "warmup": 50, "seed": s, "eval_loss": 2.0 + s / 10} for s in range(3)]
    rows += [{**base, "model": "a", "lr": 1e-2, "warmup": 200, "seed": s, "eval_loss": 1.0 + s / 10} for s in range(3)]
    rows += [{**base, "model": "b", "lr": 1e-3, "warmup": 50, "seed": s, "eval_loss": 3.0} for s in range(3)]
    return rows


def test_the_best_recipe_is_a_rate_and_a_warmup() -> None:
    summary, sweep = compare_cmd.summarise(_warmup_rows())
    assert [(c["model"], c["lr"], c["warmup"]) for c in summary] == [("a", 1e-2, 200), ("b", 1e-3, 50)]
    assert len(sweep) == 3
    table = compare_cmd.markdown_table(summary, accuracy=False)
    assert "| lr, warm-up steps |" in table and "| a | 100 | 0.01, warm-up 200 | 3 |" in table
    rates = compare_cmd.sweep_table(summary, sweep, accuracy=False)
    assert "| model | lr 0.001, warm-up 50 | lr 0.01, warm-up 50 | lr 0.01, warm-up 200 |" in rates
    assert "| a | - | 2.100 ± 0.25 | **1.100 ± 0.25** |" in rates
    same = compare_cmd.markdown_table(summary[1:], accuracy=False, with_warmup=True)  # a sweep chose b's only one
    assert "| b | 100 | 0.001, warm-up 50 | 3 |" in same
    # One warm-up for every model: the tables read as before.
    one = [row for row in _warmup_rows() if row["warmup"] == 50]
    assert "warm-up" not in compare_cmd.markdown_table(compare_cmd.summarise(one)[0], accuracy=False)


def test_merge_tells_runs_apart_by_warmup_and_refuses_a_repeat(tmp_path) -> None:
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({"rows": [{**row, "task": {"task": "mqar"}} for row in _warmup_rows()]}))
    assert len(compare_cmd.merge([str(path)])) == 9
    with pytest.raises(ZooError, match="model a, lr 0.01, warm-up 50, seed 0 appears twice"):
        compare_cmd.merge([str(path), str(path)])


def test_bad_warmups_are_one_line() -> None:
    assert compare_cmd.parse_warmups("200,50,200", 400) == [50, 200]
    assert compare_cmd.parse_warmups(None, 400) == [None]
    for text in ("long", "-1", "", "500"):
        with pytest.raises(ZooError, match="--warmups"):
            compare_cmd.parse_warmups(text, 400)


def test_compare_sweeps_warmups_and_records_each_run_s(tmp_path, fake_build, capsys) -> None:
    out = tmp_path / "cmp"
    rows = compare_cmd.compare(_small_compare(out, "--warmups", "0,1"))
    assert sorted((r["warmup"], r["seed"]) for r in rows) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {p.name for p in (out / "m-tiny").iterdir()} >= {"warmup0-seed0", "warmup1-seed1"}
    assert "[m-tiny lr=0.003 warmup=1 seed=0]" in capsys.readouterr().err
    # The journal keys each run by its warm-up too: the same command again trains nothing.
    assert compare_cmd.compare(_small_compare(out, "--warmups", "0,1")) == rows
    with pytest.raises(ZooError, match="--warmup .* or --warmups"):
        compare_cmd.compare(_small_compare(out, "--warmups", "0,1", "--warmup", "1"))
