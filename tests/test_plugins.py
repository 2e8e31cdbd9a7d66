"""Plugins: real third-party packages installed with pip (an attention backend, a mixer with
its own cache), a broken one, autoload off."""

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
    """pip-installs the fixture plugin packages into a private site dir."""
    target = tmp_path_factory.mktemp("site")
    for name in ("zoo_extra_attention", "zoo_extra_mixer", "zoo_broken_plugin"):
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(FIXTURES / name),
        ]
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
    code = (
        "import zoo; from zoo.plugins import load_plugins\n"
        "print(sorted(zoo.registry('attention').names()), zoo.registry('schedule').names())\n"
        "load_plugins(['extra_attention']); print('extra_math' in zoo.registry('attention'))"
    )
    result = run_python(code, plugin_site, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()[-2:]
    assert first.startswith("['eager', 'flex', 'sdpa'] [") and "'v9'" in first  # schedules are core
    assert second == "True"
    assert "broken" not in result.stderr


def test_project_plugins_load_through_entry_points() -> None:
    import importlib.metadata

    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="zoo.plugins")}
    assert names.get("triton_ssd") == "zoo_plugins.triton_ssd"
    import zoo

    assert zoo.registry("schedule").get("v9").origin == "zoo"  # the core's, not a plugin's


def test_schedules_are_core_not_an_entry_point() -> None:
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."zoo.plugins"]', 1)[1].split("\n[", 1)[0]
    assert "triton_ssd" in section and "schedules" not in section


def test_entry_point_naming_a_core_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale install may still list ``schedules`` as a plugin: it is not loaded a second time."""
    import importlib.metadata

    import zoo
    from zoo import plugins

    zoo.registry("schedule").names()  # the core is loaded
    stale = importlib.metadata.EntryPoint("schedules", "schedules", plugins.GROUP)
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: [stale])
    plugins._reset_for_tests()
    try:
        status = plugins.load_plugins()
        assert "schedules" not in status
    finally:
        monkeypatch.undo()
        plugins._reset_for_tests()
        plugins.load_plugins()


PRESETS_WITHOUT_PLUGINS = """
import json, zoo
from zoo.plugins import plugin_status
built = {}
for name in zoo.registry("preset").names():
    model = zoo.build(name, device="meta")
    built[name] = model.num_parameters()
print(json.dumps({"built": built, "plugins": sorted(plugin_status())}))
"""


def test_every_preset_builds_with_plugin_autoload_off() -> None:
    result = run_python(PRESETS_WITHOUT_PLUGINS, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["plugins"] == []  # nothing but the core was loaded
    assert "transmamba-tiny" in out["built"] and len(out["built"]) == 16
    assert all(n > 0 for n in out["built"].values()), out["built"]


MIXER_PLUGIN = """
import json, torch, zoo
spec = {"name": "running-mean-mix", "vocab_size": 64, "d_model": 32, "layers": [
    {"mixer": {"name": "running_mean"}, "mlp": {"d_ff": 64}},
    {"mixer": {"name": "attention", "params": {"n_heads": 2}}, "mlp": {"d_ff": 64}},
    {"mixer": {"name": "running_mean", "params": {"expand": 2}}, "mlp": {"kind": "none"}}]}
torch.manual_seed(0)
model = zoo.build(spec)
ids = torch.randint(0, 64, (4, 24))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
before = model.blocks[0].mixer.value.weight.detach().clone()
loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
loss.backward()
optimizer.step()
changed = (model.blocks[0].mixer.value.weight - before).abs().max().item()
model.eval()
prompts, lengths, new = torch.randint(0, 64, (2, 7)), [7, 4], 9
got = zoo.generate(model, prompts, new, lengths=lengths, temperature=0)
ref = []
with torch.no_grad():
    for row, n in enumerate(lengths):  # greedy decoding by full forwards, no cache
        seq = prompts[row:row + 1, :n]
        for _ in range(new):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        ref.append(seq[0, n:].tolist())
cache = model.allocate_cache(2, 16)
print(json.dumps({"loss": loss.item(), "changed": changed, "got": got.tolist(), "ref": ref,
                  "caches": [type(layer).__name__ for layer in cache.layers],
                  "origin": zoo.registry("mixer").get("running_mean").origin}))
"""


def test_third_party_mixer_trains_and_generates_with_its_cache(plugin_site: Path) -> None:
    result = run_python(MIXER_PLUGIN, plugin_site)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["origin"].startswith("zoo-extra-mixer")
    assert out["caches"] == ["RunningMeanCache", "AttentionCache", "RunningMeanCache"]
    assert out["loss"] == out["loss"] and out["changed"] > 0  # finite loss, the step moved the mixer
    assert out["got"] == out["ref"]  # cached generation == greedy full forwards, ragged rows included
