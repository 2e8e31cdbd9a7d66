"""Registry behaviour: registration, duplicates, unknown names with suggestions, availability."""

from __future__ import annotations

import pytest

import zoo
from zoo.registry import KINDS, Registry, RegistryError


def make_registry() -> Registry:
    reg = Registry("ssm")
    reg._ensure_plugins = lambda: None  # an isolated registry, no plugin loading
    return reg


def test_register_and_get() -> None:
    reg = make_registry()

    @reg.register("alpha")
    class Alpha:
        """The alpha backend."""

    entry = reg.get("alpha")
    assert entry.obj is Alpha and entry.name == "alpha" and entry.kind == "ssm"
    assert entry.origin == Alpha.__module__.split(".")[0]
    assert entry.description == "The alpha backend."
    assert reg.names() == ["alpha"] and "alpha" in reg and len(reg) == 1


def test_duplicate_names_both_origins() -> None:
    reg = make_registry()

    @reg.register("alpha", origin="first_pkg")
    class A:
        pass

    with pytest.raises(RegistryError) as info:
        reg.register("alpha", origin="second_pkg")(type("B", (), {}))
    message = str(info.value)
    assert "first_pkg" in message and "second_pkg" in message and "already registered" in message
    assert reg.get("alpha").obj is A  # not overwritten


def test_unknown_name_suggests_close_matches_and_lists_all() -> None:
    reg = make_registry()
    for name in ("chunked", "scan", "triton"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(RegistryError) as info:
        reg.get("chunkd")
    message = str(info.value)
    assert "Did you mean 'chunked'" in message
    assert "chunked, scan, triton" in message


def test_availability_reports_reason_and_survives_crashing_probe() -> None:
    reg = make_registry()

    @reg.register("gpu_only")
    class GpuOnly:
        @classmethod
        def is_available(cls):
            return False, "needs CUDA"

    @reg.register("crashy")
    class Crashy:
        @classmethod
        def is_available(cls):
            raise RuntimeError("boom")

    assert reg.get("gpu_only").availability() == (False, "needs CUDA")
    ok, reason = reg.get("crashy").availability()
    assert not ok and "boom" in reason


def test_invalid_name_rejected() -> None:
    with pytest.raises(ValueError):
        make_registry().register("")


def test_every_kind_listed() -> None:
    rows = zoo.list()
    assert {row["kind"] for row in rows} == set(KINDS)
    for row in rows:
        assert set(row) >= {"name", "origin", "available", "reason"}
        if not row["available"]:
            assert row["reason"], f"{row['kind']} {row['name']} unavailable without a reason"


def test_unknown_kind() -> None:
    with pytest.raises(RegistryError, match="kinds are"):
        zoo.registry("nope")


def test_core_components_registered() -> None:
    assert {"transmamba", "mamba2", "attention"} <= set(zoo.registry("mixer").names())
    assert {"eager", "sdpa", "flex"} <= set(zoo.registry("attention").names())
    assert {"scan", "chunked"} <= set(zoo.registry("ssm").names())
    assert {"scan", "chunked"} <= set(zoo.registry("converter").names())
    expected = {"constant", "cyclic", "attention_only", "ssm_only", "random", "paper_transformer"}
    assert expected | {f"v{i}" for i in range(1, 10)} <= set(zoo.registry("schedule").names())
    for arch in ("transmamba", "transformer", "mamba2", "hybrid"):
        for size in ("tiny", "small", "400m", "1.5b"):
            assert f"{arch}-{size}" in zoo.registry("preset")


def test_reads_run_the_installed_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry fills itself through the loader the top package installs, not by importing plugins."""
    import sys

    from zoo import plugins

    module = sys.modules["zoo.registry"]
    assert module._loader == [plugins.autoload]  # installed by `import zoo`
    calls: list[str] = []
    monkeypatch.setattr(module, "_loader", [])
    module.set_loader(lambda: calls.append("load"))
    reg = Registry("ssm")
    assert reg.names() == [] and calls == ["load"]
    "x" in reg  # noqa: B015 - a membership test is a read too
    assert calls == ["load", "load"]
