"""``zoo train --config FILE``: file values, flag overrides, unknown keys, the recorded config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import zoo.training.runs
from zoo.cli import main as zoo_main
from zoo.cli import train as train_cmd
from zoo.errors import ZooError
from zoo.training import TrainConfig, read_jsonl
from zoo.training.config_file import ConfigFileError, load_run_file

REPO = Path(__file__).resolve().parents[2]

RUN_TOML = """
model = "m-tiny"
out = "{out}"

[task]
name = "mqar"
seq_len = 32
vocab = 32
num_items = 4
train_items = [2, 4]
train_seq_lens = [16, 32]

[train]
steps = 3
batch_size = 4
lr = 1e-2
grad_clip = 0
compile = false
progress = false
device = "cpu"
"""


@pytest.fixture
def fake_build(monkeypatch, standin):
    def build_for_task(ref, task, *, device=None, backends=None, strict=True, mlp_hidden=None, ssd_gate=None):
        return standin(vocab_size=task.vocab_size, d_model=16)

    monkeypatch.setattr(zoo.training.runs, "build_for_task", build_for_task)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo")
    train_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["train", *argv])


def _resolve(*argv: str) -> TrainConfig:
    """The TrainConfig ``zoo train ARGV`` would train with, without training."""
    args = _parse(*argv)
    train = train_cmd.apply_config_file(args) if args.config else {}
    return train_cmd.config_from_args(args, **{"save_every": args.save_every, "keep_last": args.keep, **train})


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_values_train_the_run_and_the_resolved_config_repeats_it(tmp_path, fake_build, capsys) -> None:
    out = tmp_path / "run"
    config_path = _write(tmp_path, RUN_TOML.format(out=out.as_posix()))
    args = _parse("--config", str(config_path))
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    assert [row["step"] for row in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["model"] == "m-tiny" and recorded["out"] == out.as_posix()
    assert recorded["task"] == {
        "name": "mqar",
        "data": None,
        "tokenizer": "byte",
        "seq_len": 32,
        "vocab": 32,
        "num_items": 4,
        "train_items": [2, 4],
        "train_seq_lens": [16, 32],
    }
    train = recorded["train"]
    assert (train["steps"], train["batch_size"], train["lr"]) == (3, 4, 1e-2)
    assert train["grad_clip"] is None and train["compile"] is False
    assert train["warmup_steps"] == 1  # the flags' default: 5% of the file's steps, at least 1
    used = TrainConfig(**json.loads((out / "run.json").read_text())["config"])
    # the record read back through --config is the same TrainConfig, and so is the task
    assert _resolve("--config", str(out / "config.json")) == used
    again = _parse("--config", str(out / "config.json"))
    train_cmd.apply_config_file(again)
    assert (again.task, again.seq_len, again.vocab, again.num_items, again.spec) == ("mqar", 32, 32, 4, "m-tiny")
    assert again.train_items == [2, 4] and again.train_seq_lens == [16, 32]


def test_flags_given_override_the_file_even_at_their_default_values(tmp_path) -> None:
    config_path = _write(tmp_path, RUN_TOML.format(out="runs/x"))
    from_file = _resolve("--config", str(config_path))
    assert (from_file.steps, from_file.batch_size, from_file.lr, from_file.compile) == (3, 4, 1e-2, False)
    # 1000 and 16 are the flags' defaults: given explicitly, they still win over the file
    overridden = _resolve("--config", str(config_path), "--steps", "1000", "--batch-size", "16", "--clip", "2")
    assert (overridden.steps, overridden.batch_size, overridden.grad_clip) == (1000, 16, 2.0)
    assert overridden.warmup_steps == 50 and overridden.lr == 1e-2  # warmup follows --steps; lr from the file
    args = _parse("--config", str(config_path), "--seq-len", "64", "--task", "copy", "--out", "elsewhere")
    train_cmd.apply_config_file(args)
    assert (args.seq_len, args.task, args.vocab, args.out) == (64, "copy", 32, "elsewhere")
    # a flag's default never overrides the file: without flags the file's values stand
    assert _resolve("--config", str(config_path)).batch_size == 4


def test_a_positional_model_overrides_the_files(tmp_path) -> None:
    args = _parse("other-tiny", "--config", str(_write(tmp_path, RUN_TOML.format(out="x"))))
    train_cmd.apply_config_file(args)
    assert args.spec == "other-tiny"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nstepz = 3\n", "unknown key 'stepz' in [train]; the keys of [train] are steps,"),
        ("[task]\nseq = 3\n", "unknown key 'seq' in [task]; the keys of [task] are name,"),
        ("trainer = 1\n", "unknown key 'trainer' at the top level; the top-level keys are model,"),
        ("[train]\nsteps = 0\n", "[train] steps = 0: Input should be greater than or equal to 1"),
        ("[train]\nsteps = true\n", "[train] steps = True: Input should be a valid integer"),
        (
            "[task]\nname = 'lm'\n",
            "[task] name = 'lm': Input should be 'text', 'mqar', 'copy', 'induction' or 'phonebook'",
        ),
        ("[task]\ntrain_items = [4, 0]\n", "[task] train_items"),
        ("train = 3\n", "[train] must be a table"),
        ("[train\n", "invalid TOML"),
    ],
)
def test_bad_files_are_one_line_naming_the_key_and_table(tmp_path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        load_run_file(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_cli_reports_a_bad_file_in_one_line(tmp_path, capsys) -> None:
    path = _write(tmp_path, "model = 'transmamba-tiny'\n[train]\nlearning_rate = 1\n")
    assert zoo_main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'learning_rate' in [train]" in err and len(err.splitlines()) == 1
    assert zoo_main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_path_meant_from_the_files_directory_names_the_path_to_write(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "spec.json").write_text("{}")
    (tmp_path / "exp" / "corpus.txt").write_text("text")
    path = _write(tmp_path / "exp", "model = 'spec.json'\n").relative_to(tmp_path)
    with pytest.raises(ConfigFileError) as info:
        load_run_file(path)
    message = str(info.value)
    assert "model = 'spec.json'" in message and "write 'exp/spec.json'" in message and "\n" not in message
    path = _write(tmp_path / "exp", "model = 'exp/spec.json'\n[task]\ndata = 'corpus.txt'\n").relative_to(tmp_path)
    with pytest.raises(ConfigFileError, match="data = 'corpus.txt'.*write 'exp/corpus.txt'"):
        load_run_file(path)
    # found from the working directory, or a preset name: read as written
    path = _write(tmp_path / "exp", "model = 'exp/spec.json'\n[task]\ndata = 'exp/corpus.txt'\n")
    assert load_run_file(path).model == "exp/spec.json"
    assert load_run_file(_write(tmp_path / "exp", "model = 'transmamba-tiny'\n")).model == "transmamba-tiny"
    (tmp_path / "exp" / "transmamba-tiny").mkdir()  # a run directory of that preset beside the file
    path = _write(tmp_path / "exp", "model = 'transmamba-tiny'\n").relative_to(tmp_path)
    assert load_run_file(path).model == "transmamba-tiny"


def test_no_model_anywhere_is_an_error(tmp_path) -> None:
    args = _parse("--config", str(_write(tmp_path, "[train]\nsteps = 2\n")))
    with pytest.raises(ZooError, match="name a model"):
        args.func(args)


def test_yaml_and_json_files_read_like_toml(tmp_path) -> None:
    yaml_path = _write(tmp_path, "model: m-tiny\ntrain:\n  steps: 7\n  grad_clip: null\n", "run.yaml")
    json_path = _write(tmp_path, json.dumps({"model": "m-tiny", "train": {"steps": 7, "grad_clip": None}}), "r.json")
    toml_path = _write(tmp_path, "model = 'm-tiny'\n[train]\nsteps = 7\ngrad_clip = 0\n")
    configs = {path.suffix: _resolve("--config", str(path)) for path in (yaml_path, json_path, toml_path)}
    assert configs[".yaml"] == configs[".json"] == configs[".toml"]
    assert configs[".toml"].steps == 7 and configs[".toml"].grad_clip is None


INLINE_TOML = """
out = "{out}"

[model]                       # an inline spec: two TransMamba layers from a pattern
name = "tm-mini"
vocab_size = 64
d_model = 32

[model.layers]
n_layers = 2

[model.layers.block.mixer]
name = "transmamba"
params = {{ d_state = 8, headdim = 8, n_groups = 1, expand = 2 }}

[model.layers.block.mlp]
d_ff = 64

[model.schedule]
name = "v9"

[task]
name = "copy"
seq_len = 32
vocab = 16
num_items = 4

[train]
steps = 2
batch_size = 2
eval_batch_size = 128         # no flag sets it: the file can
compile = false
progress = false
device = "cpu"
"""


def test_an_inline_model_table_trains_and_is_recorded_inline(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = _parse("--config", str(_write(tmp_path, INLINE_TOML.format(out=out.as_posix()))))
    assert args.func(args) == 0  # the real builder: the table is a ModelSpec
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["train"]["eval_batch_size"] == 128
    assert recorded["model"]["name"] == "tm-mini" and recorded["model"]["layers"]["n_layers"] == 2
    spec = json.loads(next((out / "checkpoints").glob("step-*/spec.json")).read_text())
    assert [layer["mixer"]["name"] for layer in spec["layers"]] == ["transmamba", "transmamba"]
    assert spec["d_model"] == 32 and spec["vocab_size"] == 16  # the task's vocabulary
    again = _parse("--config", str(out / "config.json"))
    assert train_cmd.apply_config_file(again) is not None and again.spec == recorded["model"]


def test_a_spec_file_is_recorded_inline_and_a_preset_by_name(tmp_path) -> None:
    from zoo.training.runs import resolve_spec

    spec = resolve_spec("transmamba-tiny")
    spec_path = tmp_path / "mine.json"
    spec_path.write_text(json.dumps(spec))
    for model, expected in ((str(spec_path), spec), ("transmamba-tiny", "transmamba-tiny")):
        out = tmp_path / model.replace("/", "_")
        path = train_cmd.record_config(_parse(model, "--steps", "5"), out, TrainConfig(steps=5))
        assert json.loads(path.read_text())["model"] == expected
    spec_path.unlink()  # the record of the spec file stands without the file
    assert load_run_file(tmp_path / str(spec_path).replace("/", "_") / "config.json").model == spec


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda path: path.name)
def test_every_shipped_config_resolves_to_a_run_and_a_task(path) -> None:
    from zoo.cli._task_args import task_from_args

    config = _resolve("--config", str(path))
    args = _parse("--config", str(path))
    train_cmd.apply_config_file(args)
    task = task_from_args(args)
    assert config.steps >= 1 and task.seq_len == args.seq_len
    assert args.spec and args.out
    if path.name == "transmamba-tiny.toml":  # the example the docs walk through
        assert load_run_file(path).model == "transmamba-tiny" and config.steps == 300
