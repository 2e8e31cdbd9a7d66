"""The model specs the experiments in docs/experiments ran stay valid (each builds on the meta
device), and the Table 9 recipes are what make_specs.py writes, so the files and the script
that documents them cannot drift apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "docs" / "experiments"
SPECS = sorted(
    path
    for path in EXPERIMENTS.rglob("*.json")
    if path.name != "compare.json" and "vocab_size" in json.loads(path.read_text())
)


def test_the_experiments_have_specs() -> None:
    assert len(SPECS) >= 30, SPECS


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_each_experiment_spec_builds(path: Path) -> None:
    model = zoo.build(str(path), device="meta")
    assert model.num_parameters() > 0


def test_make_specs_writes_the_committed_table9_recipes(tmp_path) -> None:
    folder = EXPERIMENTS / "table9-cpu"
    subprocess.run(
        [sys.executable, str(folder / "make_specs.py"), "--out", str(tmp_path)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert "gd-phased100.json" in written and "v9.json" in written
    for name in written:
        assert json.loads((tmp_path / name).read_text()) == json.loads((folder / name).read_text()), name
