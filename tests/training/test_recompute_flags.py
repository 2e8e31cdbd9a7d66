"""``--mlp-hidden`` / ``--ssd-gate`` for ``zoo train`` / ``zoo compare``: the spec's
training-memory opt-ins set for every layer, kept by the checkpoint and the resolved config."""

from __future__ import annotations

import json

import pytest

from zoo.cli import main

TINY_MQAR = ["--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4", "--batch-size", "2"]
CPU = ["--no-compile", "--no-progress", "--device", "cpu"]


def _recompute_settings(spec: dict) -> tuple[set, set]:
    """(SwiGLU hidden settings, SSD gate settings) over the layers; absent means the default, save."""
    hidden = {
        layer["mlp"].get("hidden", "save") for layer in spec["layers"] if layer["mlp"].get("kind", "swiglu") == "swiglu"
    }
    gates = {
        (layer["mixer"].get("params") or {}).get("gate", "save")
        for layer in spec["layers"]
        if layer["mixer"]["name"] != "attention"
    }
    return hidden, gates


def test_train_sets_them_and_the_checkpoint_and_resolved_config_keep_them(tmp_path) -> None:
    from zoo.checkpoint import latest_checkpoint, open_checkpoint

    out = tmp_path / "run"
    argv = ["train", "hybrid-tiny", *TINY_MQAR, *CPU, "--steps", "2", "--out", str(out)]
    assert main([*argv, "--mlp-hidden", "recompute", "--ssd-gate", "recompute"]) == 0
    assert _recompute_settings(open_checkpoint(latest_checkpoint(out)).spec) == ({"recompute"}, {"recompute"})
    recorded = json.loads((out / "config.json").read_text())["model"]
    assert isinstance(recorded, dict) and _recompute_settings(recorded) == ({"recompute"}, {"recompute"})
    # the recorded config repeats the run with them
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert _recompute_settings(open_checkpoint(latest_checkpoint(again)).spec) == ({"recompute"}, {"recompute"})


def test_train_without_them_keeps_the_preset_and_records_its_name(tmp_path) -> None:
    from zoo.checkpoint import latest_checkpoint, open_checkpoint

    out = tmp_path / "run"
    assert main(["train", "mamba2-tiny", *TINY_MQAR, *CPU, "--steps", "1", "--out", str(out)]) == 0
    assert _recompute_settings(open_checkpoint(latest_checkpoint(out)).spec) == ({"save"}, {"save"})
    assert json.loads((out / "config.json").read_text())["model"] == "mamba2-tiny"


def test_compare_applies_them_to_every_model_that_has_the_part(tmp_path) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "transmamba-tiny", "transformer-tiny", *TINY_MQAR, *CPU, "--seeds", "1", "--budget", "1"]
    assert main([*argv, "--no-plot", "--out", str(out), "--ssd-gate", "recompute", "--mlp-hidden", "recompute"]) == 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    specs = {run["settings"]["model"]: run["settings"]["spec"] for run in runs}
    assert _recompute_settings(specs["transmamba-tiny"]) == ({"recompute"}, {"recompute"})
    assert _recompute_settings(specs["transformer-tiny"]) == ({"recompute"}, set())


@pytest.mark.parametrize("flag", ["--mlp-hidden", "--ssd-gate"])
def test_a_bad_value_is_one_line_naming_the_flag(flag: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "mamba2-tiny", *TINY_MQAR, *CPU, flag, "drop"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "choose from" in err and "Traceback" not in err
