"""The ``zoo`` command line: list, schema, build (good and bad specs), plan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zoo.cli import main


def test_list_shows_every_kind(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("mixer", "attention", "ssm", "converter", "schedule", "preset"):
        assert f"\n{kind} (" in "\n" + out
    assert "available: yes" in out


def test_schema_is_json(capsys) -> None:
    import jsonschema

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "layers" in schema["properties"]


def test_build_preset_prints_plan(capsys) -> None:
    assert main(["build", "transmamba-1.5b", "--seq-len", "8192"]) == 0
    out = capsys.readouterr().out
    assert "layer  31" in out and "P=8192" in out and "total parameters" in out


def test_bad_spec_file_exits_nonzero_naming_field(tmp_path) -> None:
    bad = {
        "vocab_size": 260,
        "d_model": 64,
        "layers": [
            {
                "mixer": {
                    "name": "transmamba",
                    "params": {"headdim": 16},
                    "attention": {"name": "sdpa", "params": {"bogus": 1}},
                }
            }
        ],
        "schedule": {"name": "v9"},
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = subprocess.run([sys.executable, "-m", "zoo", "build", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "layers.0.mixer.attention.params.bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_preset_short_error(capsys) -> None:
    assert main(["build", "transformr-tiny"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'transformer-tiny'" in err


@pytest.mark.parametrize("relative", [False, True])
def test_plan_prints_paper_v9_transpoints(capsys, relative) -> None:
    args = ["plan", "transmamba-400m", "--seq-len", "8192", "--schedule", "v9"] + (["--relative"] if relative else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and "transmamba" in line]
    assert [int(r[2]) for r in rows] == [0, 128, 256, 512, 1024, 2048, 4096, 8192, 0, 128, 256, 512]
    assert "attention" in out and "SSM" in out


def test_plan_bad_length(capsys) -> None:
    assert main(["plan", "transmamba-tiny", "--seq-len", "0"]) == 2
