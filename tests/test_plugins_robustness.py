"""Plugins cannot break the zoo: one that exits, fails half-way, or claims a built-in name is
reported and leaves nothing behind; the other plugins load."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

import zoo
from zoo import plugins
from zoo.errors import BackendUnsupportedError
from zoo.registry import ATTENTION, SSM, RegistryError, _current_origin


class FakeEntryPoint:
    """Enough of importlib.metadata.EntryPoint for ``_load_one``: ``load()`` runs ``action``."""

    def __init__(self, name: str, action: Callable[[], object]) -> None:
        self.name = name
        self.value = f"fake_{name}"
        self.dist = None
        self.group = plugins.GROUP
        self._action = action

    def load(self) -> object:
        return self._action()


def _exits() -> object:
    import sys

    sys.exit(3)


def _registers_then_fails() -> object:
    @ATTENTION.register("robust_half_loaded")
    class HalfLoaded:
        pass

    @SSM.register("robust_half_loaded_ssm")
    class HalfLoadedSSM:
        pass

    raise ImportError("missing my_kernels")


def _claims_builtin() -> object:
    @SSM.register("chunked")
    class Impostor:
        pass

    return None


def _registers_fine() -> object:
    @ATTENTION.register("robust_fine")
    class Fine:
        pass

    return None


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[FakeEntryPoint]], dict]]:
    """Runs ``load_plugins`` over fake entry points, then restores the real plugin state."""
    zoo.registry("ssm").names()  # core and real plugins loaded first

    def run(eps: list[FakeEntryPoint]) -> dict:
        monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: eps)
        plugins._reset_for_tests()
        with pytest.warns(RuntimeWarning):
            plugins.load_plugins()
        return plugins.failed_plugins()

    yield run
    monkeypatch.undo()
    ATTENTION._discard("robust_fine", "robust_fine")
    plugins._reset_for_tests()
    plugins.load_plugins()


def test_plugin_calling_sys_exit_is_reported_and_the_rest_loads(fake_plugins) -> None:
    failed = fake_plugins([FakeEntryPoint("robust_exit", _exits), FakeEntryPoint("robust_fine", _registers_fine)])
    assert failed == {"robust_exit": "SystemExit: 3"}
    assert ATTENTION.get("robust_fine").origin == "robust_fine"


def test_keyboard_interrupt_in_a_plugin_still_stops() -> None:
    def interrupted() -> object:
        raise KeyboardInterrupt

    depth = len(_current_origin)
    with pytest.raises(KeyboardInterrupt):
        plugins._load_one(FakeEntryPoint("robust_ctrl_c", interrupted))
    assert len(_current_origin) == depth  # the plugin's origin is popped on the way out


def test_failed_plugin_registrations_are_rolled_back(fake_plugins) -> None:
    failed = fake_plugins([FakeEntryPoint("robust_half", _registers_then_fails)])
    assert failed == {"robust_half": "ImportError: missing my_kernels"}
    assert "robust_half_loaded" not in ATTENTION
    assert "robust_half_loaded_ssm" not in SSM


def test_plugin_cannot_replace_a_builtin(fake_plugins) -> None:
    builtin = SSM.get("chunked").obj
    failed = fake_plugins([FakeEntryPoint("robust_impostor", _claims_builtin)])
    error = failed["robust_impostor"]
    assert error.startswith("RegistryError:") and "registered by zoo" in error and "robust_impostor" in error
    assert SSM.get("chunked").obj is builtin and SSM.get("chunked").origin == "zoo"


def test_no_public_api_removes_or_replaces_a_name() -> None:
    public = {n for n in dir(SSM) if not n.startswith("_")}
    assert not public & {"unregister", "remove", "replace", "pop", "clear", "override", "update"}
    assert not hasattr(SSM, "__setitem__") and not hasattr(SSM, "__delitem__")
    with pytest.raises(RegistryError, match="already registered by zoo"):
        SSM.register("chunked", origin="someone")(type("Impostor", (), {}))
    assert SSM.get("chunked").origin == "zoo"


# A backend that breaks the slot's contract is named at build (a dry run on tiny inputs).


def _wrong_attention(q, k, v, *, scale, causal=True):
    return v[..., :-1]  # one head-dim column short


def _ssm_state_in_wrong_dtype(x, dt, A, B, C, *, D=None, initial_state=None, return_final_state=False):
    y = torch.zeros_like(x)
    state = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[-1], dtype=torch.float16)
    return (y, state) if return_final_state else y


@pytest.fixture
def bad_backends() -> Iterator[None]:
    from zoo.backends.base import AttentionBackend, SSMBackend

    zoo.registry("ssm").names()
    ATTENTION.register("robust_wrong_shape", origin="robust_test")(
        type("WrongShape", (AttentionBackend,), {"op": staticmethod(_wrong_attention)})
    )
    SSM.register("robust_wrong_dtype", origin="robust_test")(
        type("WrongDtype", (SSMBackend,), {"op": staticmethod(_ssm_state_in_wrong_dtype)})
    )
    yield
    ATTENTION._discard("robust_wrong_shape", "robust_test")
    SSM._discard("robust_wrong_dtype", "robust_test")


def _spec_with(slot: str, name: str) -> dict:
    from zoo.overrides import spec_with_backends

    spec = zoo.resolve_spec("transmamba-tiny").model_dump(mode="json")
    return spec_with_backends(spec, {slot: name})[0]


def test_backend_returning_the_wrong_shape_is_named_at_build(bad_backends) -> None:
    with pytest.raises(BackendUnsupportedError) as info:
        zoo.build(_spec_with("attention", "robust_wrong_shape"), compile=False)
    message = str(info.value)
    assert "layers.0.mixer.attention" in message and "'robust_wrong_shape'" in message
    assert "returned [1, 3, 16, 15] float32" in message and "expects [1, 3, 16, 16] float32" in message, message


def test_backend_returning_the_wrong_dtype_is_named_at_build(bad_backends) -> None:
    with pytest.raises(BackendUnsupportedError) as info:
        zoo.build(_spec_with("ssm", "robust_wrong_dtype"), compile=False)
    message = str(info.value)
    assert "layers.0.mixer.ssm" in message and "'robust_wrong_dtype'" in message
    assert "float16" in message and "final state" in message, message


def test_dry_run_only_where_the_backends_are_checked_and_the_model_is_built(bad_backends) -> None:
    spec = _spec_with("attention", "robust_wrong_shape")
    zoo.build(spec, device="meta", compile=False)  # no tensors to run on
    # Built on the CPU for another device (as for a GPU-only backend): nothing is called here.
    zoo.build(spec, device="cpu", support_device="meta", compile=False, allow_large=True)
