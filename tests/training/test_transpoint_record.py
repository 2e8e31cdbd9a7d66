"""The training-TransPoint record survives trainer checkpoints, save_pretrained and
from_pretrained; files written without it still load; the CLI flags override it."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo import checkpoint as ckpt
from zoo.cli import main
from zoo.data import make_task
from zoo.errors import ZooError
from zoo.training import TrainConfig, Trainer

TRAINED = [0, 1, 2, 4, 8, 16]  # V9 relative, six layers, T = 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-step run of the tiny TransMamba preset on a T = 64 task, checkpointed."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("run")
    task = make_task("mqar", seq_len=64, vocab_size=64, num_items=4, eval_examples=8)
    config = TrainConfig(steps=1, batch_size=2, compile=False, progress=False, device="cpu")
    Trainer(zoo.build("transmamba-tiny"), task, config, out_dir=out).fit()
    return out


@pytest.fixture(scope="module")
def text_run_dir(tmp_path_factory):
    """The same on text (zoo generate takes text checkpoints only)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("text-run")
    task = make_task("text", data="builtin:topics", seq_len=64)
    config = TrainConfig(steps=1, batch_size=2, compile=False, progress=False, device="cpu")
    Trainer(zoo.build("transmamba-tiny"), task, config, out_dir=out).fit()
    return out


def _strip_record(path) -> None:
    """Make ``path`` look like a checkpoint written before the record existed."""
    (path / ckpt.TRANSPOINTS_FILE).unlink()
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    del manifest["files"][ckpt.TRANSPOINTS_FILE]
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))


def test_checkpoint_round_trips_the_record(run_dir) -> None:
    stored = ckpt.open_checkpoint(run_dir).transpoints
    assert stored["seq_len"] == 64 and stored["transpoints"] == TRAINED and stored["schedule"] == "v9"
    model = zoo.load(run_dir)
    assert list(model.trained_transpoints.transpoints) == TRAINED and model.trained_transpoints.seq_len == 64
    assert model.allocate_cache(1, 22).transpoints == TRAINED


def test_old_checkpoint_without_the_record_loads(run_dir, tmp_path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(ckpt.latest_checkpoint(run_dir), old)
    _strip_record(old)
    # the trainer state still names the training length: the schedule there is the record
    assert list(zoo.load(old).trained_transpoints.transpoints) == TRAINED
    state = json.loads((old / ckpt.STATE_FILE).read_text())
    del state["task"]
    (old / ckpt.STATE_FILE).write_text(json.dumps(state))
    manifest = json.loads((old / ckpt.MANIFEST).read_text())
    manifest["files"][ckpt.STATE_FILE]["bytes"] = (old / ckpt.STATE_FILE).stat().st_size
    manifest["files"][ckpt.STATE_FILE]["sha256"] = ckpt._sha256(old / ckpt.STATE_FILE)
    (old / ckpt.MANIFEST).write_text(json.dumps(manifest))
    model = zoo.load(old)
    assert model.trained_transpoints is None  # nothing known: the schedule at each length, as before
    assert model.allocate_cache(1, 22).transpoints == model.transpoints_for(22)


def test_malformed_record_is_one_clear_error(run_dir, tmp_path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt.latest_checkpoint(run_dir), bad)
    (bad / ckpt.TRANSPOINTS_FILE).write_text(json.dumps({"seq_len": 64, "transpoints": [0, 1]}))
    manifest = json.loads((bad / ckpt.MANIFEST).read_text())
    manifest["files"][ckpt.TRANSPOINTS_FILE] = {
        "bytes": (bad / ckpt.TRANSPOINTS_FILE).stat().st_size,
        "sha256": ckpt._sha256(bad / ckpt.TRANSPOINTS_FILE),
    }
    (bad / ckpt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match=r"trained_transpoints\.transpoints must be one per layer: 6 values, got 2"):
        zoo.load(bad)


def test_save_pretrained_round_trips_the_record(run_dir, tmp_path) -> None:
    model = zoo.load(run_dir)
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["trained_transpoints"]["transpoints"] == TRAINED
    loaded, _ = zoo.from_pretrained(tmp_path / "m")
    assert loaded.trained_transpoints == model.trained_transpoints
    assert loaded.trained_transpoints.params == {"relative": True}
    # written without a record (fresh build: null) or by an older zoo (no key): loads, no record
    zoo.build("transmamba-tiny").save_pretrained(tmp_path / "fresh")
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["trained_transpoints"] is None
    del config["trained_transpoints"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert zoo.from_pretrained(tmp_path / "m")[0].trained_transpoints is None
    assert zoo.from_pretrained(tmp_path / "fresh")[0].trained_transpoints is None


def test_cli_flags_override_with_one_warning_line(run_dir, text_run_dir, capsys) -> None:
    generate = ["generate", str(text_run_dir), "--prompt", "hi", "--max-new-tokens", "3"]
    assert main([*generate, "--transpoints", "0"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo generate: warning: transpoints gives TransPoints [0, 0, 0")
    assert main(generate) == 0
    assert capsys.readouterr().err == ""
    # eval at another length keeps the training TransPoints; the schedule at T = 32 would differ
    runs = {
        "default": [],
        "trained": ["--transpoints", "0,1,2,4,8,16"],
        "schedule at 32": ["--transpoints", "0,1,1,2,4,8"],
        "ssm": ["--schedule", "ssm_only"],
    }
    evals = {}
    for name, flags in runs.items():
        assert main(["eval", str(run_dir), "--seq-len", "32", "--batch-size", "4", *flags]) == 0
        captured = capsys.readouterr()
        evals[name] = json.loads(captured.out)["eval_loss"]
        assert ("warning" in captured.err) == (name not in ("default", "trained")), (name, captured.err)
    assert evals["trained"] == evals["default"] != evals["schedule at 32"]
    assert evals["default"] != evals["ssm"]
    assert main(["generate", str(text_run_dir), "--prompt", "hi", "--transpoints", "x"]) == 2
    assert "transpoints: give integers >= 0" in capsys.readouterr().err
