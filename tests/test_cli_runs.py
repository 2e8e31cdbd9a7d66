"""Nothing is lost: a run, a comparison or a saved benchmark is never replaced by another
command's without being asked (``--resume``, ``--overwrite``), and the refusal comes before
any work, as one line naming the flag and the fix."""

from __future__ import annotations

import json

import pytest
from test_cli_errors import assert_one_line  # a sibling module: tests/ is on sys.path

import zoo
import zoo.checkpoint as ckpt
from zoo.cli import main

TASK = ("--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4", "--batch-size", "4")
FAST = ("--no-compile", "--no-progress", "--device", "cpu")


def train(capsys, out, *extra: str, model: str = "transformer-tiny", steps: int = 2) -> tuple[int, str, str]:
    code = main(["train", model, *TASK, *FAST, "--steps", str(steps), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_new_run_never_mixes_with_an_earlier_runs_checkpoints(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(capsys, out, steps=4)[0] == 0
    code, _, err = train(capsys, out, steps=2)
    assert code == 2
    assert_one_line(err, f"--out {out} holds an earlier run (checkpoint at step 4)", "--resume", "--overwrite")
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000004"]  # untouched
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    code, _, _ = train(capsys, out, "--overwrite", steps=2)
    assert code == 0
    # the earlier run is gone, so the latest checkpoint is this run's
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000002"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_checks_the_model_the_steps_and_says_when_there_is_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code, _, err = train(capsys, out, "--resume", steps=8)
    assert code == 0 and f"note: {out} holds no checkpoint to resume; starting a new run" in err
    code, _, err = train(capsys, out, "--resume", model="mamba2-tiny", steps=10)
    assert code == 2
    assert_one_line(err, f"--resume: {out} was trained as transformer-tiny, not mamba2-tiny")
    code, _, err = train(capsys, out, "--resume", "--overwrite", steps=10)
    assert code == 2
    assert_one_line(err, "--resume continues the run in --out and --overwrite deletes it")
    # a job resubmitted with --resume after it ended has nothing to do, and says so
    code, stdout, err = train(capsys, out, "--resume", steps=8)
    assert code == 0 and stdout == ""
    assert_one_line(err, f"note: {out} is already at step 8 (--steps); nothing to train")
    code, stdout, _ = train(capsys, out, "--resume", steps=10)
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    # two steps after resuming at step 8: too few to leave the first (compiling) steps out, so all are timed
    assert summary["step"] == 10 and summary["tokens_per_s"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "transformer-tiny", *TASK, *FAST, "--steps", "1", "--out", "{file}"],
        ["compare", "transformer-tiny", *TASK, *FAST, "--steps", "1", "--out", "{file}"],
        ["bench", "--suite", "train", "--models", "transformer-tiny", "--out", "{file}", "--device", "cpu"],
        ["bench", "--suite", "ssm", "--storage", "{file}", "--device", "cpu"],
    ],
    ids=lambda argv: argv[0] + ("-storage" if "--storage" in argv else ""),
)
def test_a_directory_flag_naming_a_file_is_one_line_before_any_work(tmp_path, capsys, argv) -> None:
    path = tmp_path / "afile"
    path.write_text("keep me")
    code = main([str(path) if a == "{file}" else a for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err, f"{path}: is a file, not a directory")
    assert path.read_text() == "keep me"


def test_a_default_run_directory_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is runs/<model> under the working directory
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "transformer-tiny").write_text("keep me")
    code = main(["train", "transformer-tiny", *TASK, *FAST, "--steps", "1"])
    assert code == 2
    assert_one_line(capsys.readouterr().err, "runs/transformer-tiny: is a file, not a directory; choose another --out")
    assert (tmp_path / "runs" / "transformer-tiny").read_text() == "keep me"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "transformer-tiny", *FAST, "--seq-len", "0"], "--seq-len 0: must be >= 1"),
        (["eval", "runs/none", "--seq-len", "-5"], "--seq-len -5: must be >= 1"),
        (["build", "transmamba-tiny", "--seq-len", "0"], "--seq-len 0: must be >= 1"),
        (["bench", "--suite", "model", "--seq-len", "-64", "--device", "cpu"], "--seq-len -64: must be >= 1"),
        (["bench", "--suite", "ssm", "--repeats", "0", "--device", "cpu"], "--repeats 0: must be >= 1"),
        (["bench", "--suite", "ssm", "--backend", "ssm=nosuch", "--device", "cpu"], "applies to --suite train"),
        (["bench-decode", "--contexts", "-16", "--device", "cpu"], "--contexts -16: must be >= 1"),
        (["bench-decode", "--steps", "0", "--device", "cpu"], "--steps 0: must be >= 1"),
        (["bench-decode", "--mode", "cudagraph", "--device", "cpu"], "--mode cudagraph needs a CUDA device"),
        (["train", "transformer-tiny", *FAST, "--steps", "2", "--warmup", "100"], "--warmup 100: longer than --steps"),
        (["train", "transformer-tiny", *FAST, "--task", "mqar", "--num-items", "0"], "--num-items 0: must be >= 1"),
        (["train", "transformer-tiny", *FAST, "--task", "mqar", "--vocab", "1"], "--vocab 1: must be >= 2"),
        (["train", "transformer-tiny", *FAST, "--clip", "-1"], "--clip -1.0: must be > 0, or 0 to turn clipping off"),
        (["train", "transformer-tiny", *FAST, "--task", "mqar", "--vocab", "3"], "needs --vocab >= 66, got 3"),
        (
            ["train", "transformer-tiny", *FAST, "--task", "copy", "--seq-len", "8", "--num-items", "100"],
            "got --seq-len 8",
        ),
        (["compare", "=transformer-tiny", *FAST], "LABEL=REF needs both a label and a model"),
        (["compare", "transformer-tiny", *FAST, "--lrs", "1e-3,,2e-3"], "--lrs takes comma-separated numbers"),
        (["demo", "--minutes", "0"], "--minutes 0.0: must be > 0"),
        (["demo", "--preset", "nosuch", "--build-only"], "--preset 'nosuch': unknown preset"),
        (["plan", "transmamba-tiny", "--seq-len", "64", "--relative"], "--relative applies to --schedule NAME"),
        (["plan", "transmamba-tiny", "--seq-len", "64", "--width", "0"], "--width must be >= 1"),
    ],
    ids=lambda v: " ".join(v[:3]) if isinstance(v, list) else None,
)
def test_bad_counts_are_assert_one_line(tmp_path, capsys, monkeypatch, argv, needle) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err, needle)


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--max-new-tokens", "0"], "--max-new-tokens 0: must be an integer >= 1"),
        (["--temperature", "-1"], "--temperature -1.0: must be a finite number >= 0 (0: greedy)"),
        (["--temperature", "nan"], "--temperature nan: must be a finite number >= 0 (0: greedy)"),
        (["--top-k", "0"], "--top-k 0: must be an integer >= 1"),
        (["--top-p", "1.5"], "--top-p 1.5: must lie in (0, 1]"),
        (["--seed", "-1"], "--seed -1: must be an integer in [0, 2**63)"),
    ],
)
def test_generate_refuses_sampling_flags_before_echoing_the_prompt(capsys, flags, needle) -> None:
    code = main(["generate", "transformer-tiny", "--prompt", "hi", "--device", "cpu", *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # the prompt is not echoed ahead of the error
    assert captured.err.strip() == f"zoo generate: error: {needle}"  # the whole line: no Python-side wording


def test_compare_keeps_another_commands_table_and_runs(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    base = ["compare", "transformer-tiny", *TASK, *FAST, "--steps", "1", "--seeds", "1", "--no-plot", "--out", str(out)]
    assert main([*base, "--lr", "3e-3"]) == 0
    first = (out / "compare.json").read_text()
    capsys.readouterr()
    assert main([*base, "--lr", "3e-3"]) == 0  # the same command again: resumes, reusing the run
    assert "finished earlier: reused" in capsys.readouterr().err
    assert (out / "compare.json").read_text() != "" and not list(out.glob("compare-*"))
    assert main([*base, "--lr", "1e-2"]) == 0  # another command: its run and table go beside the first's
    err = capsys.readouterr().err
    assert f"{out / 'transformer-tiny' / 'seed0'} holds a run of other settings" in err
    assert "kept it as compare-" in err
    kept = list(out.glob("compare-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == first
    assert ckpt.latest_checkpoint(out / "transformer-tiny" / "seed0") is not None  # the first run's model stays
    assert ckpt.latest_checkpoint(out / "transformer-tiny" / "seed0-2") is not None
    record = json.loads((out / "compare.json").read_text())
    assert [row["lr"] for row in record["rows"]] == [1e-2]
    # a merge's table is rebuilt from its inputs: merging again into the same --out replaces it
    merged = tmp_path / "merged"
    for _ in range(2):
        assert main(["compare", "--merge", str(out / "compare.json"), "--out", str(merged), "--no-plot"]) == 0
    assert not list(merged.glob("compare-*"))


def test_bench_save_name_is_checked_before_the_benchmark(tmp_path, capsys, monkeypatch) -> None:
    import zoo.bench

    (tmp_path / "mine.json").write_text("{}")
    monkeypatch.setattr(zoo.bench, "ssm_suite", lambda *a, **k: pytest.fail("the benchmark ran"))
    code = main(["bench", "--suite", "ssm", "--device", "cpu", "--storage", str(tmp_path), "--save", "mine"])
    assert code == 2
    assert_one_line(capsys.readouterr().err, "--save 'mine'", "exists")


def test_a_synthetic_checkpoint_refuses_text_flags(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(capsys, out, model="transmamba-tiny", steps=1)[0] == 0
    (tmp_path / "notes.txt").write_text("some text " * 100)
    assert main(["eval", str(out), "--device", "cpu", "--data", str(tmp_path / "notes.txt")]) == 2
    assert_one_line(
        capsys.readouterr().err, "--data applies to text checkpoints; this one was trained on the mqar task"
    )
    assert main(["generate", str(out), "--prompt", "hi", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line(captured.err, "trained on the mqar task, not on text")
    # more TransPoints than layers would drop the rest without a word
    assert main(["eval", str(out), "--device", "cpu", "--transpoints", "1,2,3,4,5,6,7"]) == 2
    assert_one_line(
        capsys.readouterr().err, "transpoints: 7 values for a model of 6 layers", "a shorter list is cycled"
    )


def test_config_file_problems_are_assert_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin.toml").write_bytes(b'model = "transformer-tiny"\n# caf\xe9\n')
    (tmp_path / "tok.toml").write_text('model = "transformer-tiny"\n[task]\ntokenizer = "bpe:abc"\n')
    for config, needle in [
        (".", "--config .: is a directory"),
        ("latin.toml", "latin.toml: not UTF-8 text"),
        ("tok.toml", "--tokenizer 'bpe:abc': expected byte, bpe or bpe:VOCAB"),  # the file's value, checked as a flag's
    ]:
        assert main(["train", "--config", config, *FAST, "--steps", "1"]) == 2
        assert_one_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "transformer-tiny", "--lr", "abc"], "zoo train: error: argument --lr: invalid float value: 'abc'"),
        (["compare", "transformer-tiny", "--seeds", "1,2"], "argument --seeds: invalid int value: '1,2'"),
        (["bench", "compare", "only-one"], "zoo bench compare: error: the following arguments are required"),
    ],
)
def test_argparse_refusals_are_one_line_pointing_at_help(capsys, argv, needle) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert_one_line(capsys.readouterr().err, needle, "--help)")


def test_merge_of_a_file_without_runs_is_assert_one_line(tmp_path, capsys) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (tmp_path / "other.json").write_text('{"rows": [1, 2]}')
    for name, needle in [("metrics.jsonl", "holds no finished run"), ("other.json", "not runs of zoo compare")]:
        assert main(["compare", "--merge", str(tmp_path / name), "--out", str(tmp_path / "m")]) == 2
        assert_one_line(capsys.readouterr().err, f"--merge {tmp_path / name}", needle)


def test_a_replaced_vocabulary_is_one_warning_per_command(tmp_path, capsys) -> None:
    spec = zoo.resolve_spec("transformer-tiny").model_dump(mode="json")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec, "vocab_size": 1000}))
    argv = ["compare", f"mine={path}", *TASK, *FAST, "--steps", "1", "--seeds", "2", "--no-plot"]
    assert main([*argv, "--out", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the spec's vocab_size 1000 is replaced by the task's 32") == 1, err
