"""The backend slots are one list: registry kinds, spec fields, overrides and mixers agree."""

from __future__ import annotations

import pytest

from zoo.errors import SpecError
from zoo.registry import BACKEND_SLOTS, KINDS, MIXER, REGISTRIES
from zoo.specs import MixerSpec, load_spec


def test_every_slot_is_a_registry_kind_and_a_mixer_spec_field() -> None:
    assert set(BACKEND_SLOTS) <= set(KINDS) and set(BACKEND_SLOTS) <= set(REGISTRIES)
    spec_slots = {name for name, field in MixerSpec.model_fields.items() if name not in ("name", "params")}
    assert spec_slots == set(BACKEND_SLOTS)
    for entry in MIXER.entries():
        assert set(getattr(entry.obj, "backend_slots", {})) <= set(BACKEND_SLOTS), entry.name


@pytest.mark.parametrize("slot", ["conv", "norm"])
def test_ssd_mixers_have_conv_and_norm_slots_defaulting_to_torch(slot: str) -> None:
    for name in ("mamba2", "transmamba"):
        assert MIXER.get(name).obj.backend_slots[slot] == "torch"


def test_the_old_conv_kernel_param_names_the_slot() -> None:
    spec = {
        "vocab_size": 32,
        "d_model": 16,
        "layers": [{"mixer": {"name": "mamba2", "params": {"headdim": 8, "d_state": 8, "conv_kernel": "triton"}}}],
    }
    with pytest.raises(SpecError, match=r"conv_kernel is not a mixer param.*conv: \{name: triton\}"):
        load_spec(spec)


@pytest.mark.parametrize("slot", ["conv", "norm"])
def test_a_backend_on_a_mixer_without_the_slot_is_refused(slot: str) -> None:
    spec = {
        "vocab_size": 32,
        "d_model": 16,
        "layers": [{"mixer": {"name": "attention", "params": {"n_heads": 2}, slot: {"name": "torch"}}}],
    }
    with pytest.raises(SpecError, match=f"takes no {slot} backend"):
        load_spec(spec)


def test_an_unknown_norm_backend_names_the_registered_ones() -> None:
    spec = {
        "vocab_size": 32,
        "d_model": 16,
        "layers": [{"mixer": {"name": "mamba2", "params": {"headdim": 8, "d_state": 8}, "norm": {"name": "trition"}}}],
    }
    with pytest.raises(SpecError, match="unknown norm 'trition'. Did you mean 'triton'"):
        load_spec(spec)
