"""Plugins: a real third-party package installed with pip, a broken one, autoload off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-installs the two fixture plugin packages into a private site dir."""
    target = tmp_path_factory.mktemp("site")
    for name in ("zoo_extra_attention", "zoo_broken_plugin"):
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
               "--no-index", "--target", str(target), str(FIXTURES / name)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return target


def run_python(code: str, site: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ZOO_DISABLE_PLUGIN_AUTOLOAD"}
    if site is not None:
        environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")])
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


BUILD_WITH_PLUGIN = """
import json, warnings, torch, zoo
from zoo.plugins import failed_plugins
spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
for layer in spec["layers"]:
    layer["mixer"]["attention"] = {"name": "extra_math", "params": {"softmax_dtype": "float64"}}
model = zoo.build(spec)
ref = zoo.build("transmamba-tiny")
ref.load_state_dict(model.state_dict())
ids = torch.randint(0, 260, (2, 40))
with torch.no_grad():
    err = (model(ids, transpoints=[40] * 6) - ref(ids, transpoints=[40] * 6)).abs().max().item()
entry = zoo.registry("attention").get("extra_math")
print(json.dumps({"origin": entry.origin, "err": err, "failed": failed_plugins(),
                  "backend": type(model.blocks[0].mixer.attention).__name__}))
"""


def test_third_party_plugin_adds_attention_backend(plugin_site: Path) -> None:
    result = run_python(BUILD_WITH_PLUGIN, plugin_site)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["backend"] == "ExtraMathAttention"
    assert out["origin"].startswith("zoo-extra-attention")
    assert out["err"] < 1e-4, out
    # the broken plugin is reported by name with its error, and did not stop the others
    assert "broken" in out["failed"] and "definitely_not_installed" in out["failed"]["broken"]
    assert "failed to load" in result.stderr and "broken" in result.stderr


def test_zoo_list_reports_plugin_and_broken_one(plugin_site: Path) -> None:
    result = run_python("from zoo.cli import main; main(['list', 'attention'])", plugin_site)
    assert result.returncode == 0, result.stderr
    assert "extra_math" in result.stdout and "zoo-extra-attention" in result.stdout
    assert "plugin 'broken' failed to load" in result.stdout


def test_autoload_off_keeps_core_and_skips_plugins(plugin_site: Path) -> None:
    code = ("import zoo; from zoo.plugins import load_plugins\n"
            "print(sorted(zoo.registry('attention').names()), zoo.registry('schedule').names())\n"
            "load_plugins(['extra_attention']); print('extra_math' in zoo.registry('attention'))")
    result = run_python(code, plugin_site, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()[-2:]
    assert first == "['eager', 'flex', 'sdpa'] []"
    assert second == "True"
    assert "broken" not in result.stderr


def test_project_plugins_load_through_entry_points() -> None:
    import importlib.metadata

    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="zoo.plugins")}
    assert names.get("schedules") == "schedules"
    assert names.get("triton_ssd") == "zoo_plugins.triton_ssd"
    import zoo

    assert zoo.registry("schedule").get("v9").origin == "zoo:schedules"
