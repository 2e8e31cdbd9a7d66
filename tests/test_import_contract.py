"""The import contract (``[tool.importlinter]`` in pyproject.toml) holds, and it has teeth.

Imports run one way, ops <- backends <- layers <- models <- inference/training <- cli,
with no circle inside any package and no core import of ``zoo_plugins``. ``make lint``
runs the same check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "zoo_plugins", "schedules")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "lint-imports"
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    if not Path(command[0]).exists():
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [*command, "--no-cache", "--no-logo"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("zoo/ops/rope.py", "import zoo.layers.norm", "zoo floors"),  # upward import
        ("zoo/layers/norm.py", "import zoo.layers.mixers.attention", "circles"),  # norm <-> attention
        ("zoo/builder.py", "import zoo_plugins.triton_ssd", "never imports the zoo's plugins"),
    ],
    ids=["upward", "circle", "core-imports-plugin"],
)
def test_contract_breaks_on_a_bad_import(tmp_path: Path, module: str, statement: str, contract: str) -> None:
    """A copy of the tree with one bad import added fails the check, naming the contract."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{statement}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
