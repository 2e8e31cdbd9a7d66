"""The TransMamba correctness contract (docs/transmamba.md, invariants 1-3).

1. SSM suffix does not depend on P:    mixer(u, P)[t >= P] == mixer(u, 0)[t >= P]
2. Attention prefix does not depend on P: mixer(u, P)[t < P] == mixer(u, T)[t < P]
3. Causality: outputs at t never depend on inputs after t, for every P.
Plus: P = 0 equals the mamba2 mixer with the same weights; P = T equals the reference
grouped-attention path written out by hand; the checks fail for a zero-state converter.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.layers.mixers.mamba2 import Mamba2Mixer, Mamba2Params
from zoo.layers.mixers.transmamba import TransMambaMixer, TransMambaParams
from zoo.ops.attention.reference import grouped_attention
from zoo.ops.rope import rotary
from zoo.registry import ATTENTION, CONVERTER, SSM

D_MODEL, CHUNK = 32, 8
PARAMS = TransMambaParams(d_state=8, headdim=8, n_groups=2, expand=2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def backend(registry, name: str, **params):
    entry = registry.get(name)
    if entry.origin == "zoo" and "chunk_size" in entry.params_model.model_fields:
        params.setdefault("chunk_size", CHUNK)
    return entry.obj(entry.params_model.model_validate(params))


def core_combos() -> list[tuple[str, str, str]]:
    """Every combination of the core's available backends, plus each plugin backend once."""
    shapes = TransMambaMixer.backend_shapes(D_MODEL, PARAMS)["ssm"]

    def runs_here(registry, entry) -> bool:
        if not entry.is_available():
            return False
        ok, _ = backend(registry, entry.name).supports(
            device=torch.device("cpu"), dtype=torch.float32, requires_grad=0, **shapes
        )
        return ok

    def names(registry, core: bool):
        return [e.name for e in registry.entries() if (e.origin == "zoo") == core and runs_here(registry, e)]

    combos = list(itertools.product(names(ATTENTION, True), names(SSM, True), names(CONVERTER, True)))
    combos += [(a, "chunked", "chunked") for a in names(ATTENTION, False)]
    combos += [("sdpa", s, "chunked") for s in names(SSM, False)]
    combos += [("sdpa", "chunked", c) for c in names(CONVERTER, False)]
    # a plugin providing both may fuse converter + suffix scan (prefix_then_scan)
    combos += [("sdpa", s, s) for s in names(SSM, False) if s in names(CONVERTER, False)]
    return combos


def _tiered(combos: list[tuple[str, str, str]]) -> list:
    """Flex (its CPU kernel compiles first) and plugin backends (the Triton interpreter) run
    in the slow tier; their parity is also checked by the conformance kit."""
    fast = {"eager", "sdpa", "scan", "chunked"}

    def slow(combo) -> bool:
        return not set(combo) <= fast

    return [pytest.param(c, marks=pytest.mark.slow) if slow(c) else c for c in combos]


def make_mixer(attention="sdpa", ssm="chunked", converter="chunked", dtype=torch.float64, params=PARAMS, seed=0):
    torch.manual_seed(seed)
    backends = {
        "attention": backend(ATTENTION, attention),
        "ssm": backend(SSM, ssm),
        "converter": backend(CONVERTER, converter),
    }
    mixer = TransMambaMixer(D_MODEL, params, backends=backends).to(dtype)
    with torch.no_grad():  # make D and the norm weight non-trivial
        mixer.ssd.D.normal_()
        mixer.ssd.norm.weight.uniform_(0.5, 1.5)
    return mixer


def dtype_for(combo: tuple[str, str, str]) -> torch.dtype:
    """fp64 for exact checks; fp32 where a backend computes in fp32 (flex, plugin kernels)."""
    core = {"eager", "sdpa", "scan", "chunked"}
    return torch.float64 if set(combo) <= core else torch.float32


def tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-10


def check_invariants(mixer, u: torch.Tensor, transpoints) -> None:
    T = u.shape[1]
    tolerance = tol(u.dtype)
    with torch.no_grad():
        ssm_only = mixer(u, transpoint=0)
        attn_only = mixer(u, transpoint=T)
        for P in transpoints:
            out = mixer(u, transpoint=P)
            Pc = min(P, T)
            if Pc < T:
                err = rel_err(out[:, Pc:], ssm_only[:, Pc:])
                assert err < tolerance, f"invariant 1 (SSM suffix independent of P) fails at P={P}: {err:.2e}"
            if Pc > 0:
                err = rel_err(out[:, :Pc], attn_only[:, :Pc])
                assert err < tolerance, f"invariant 2 (attention prefix independent of P) fails at P={P}: {err:.2e}"


def check_causality(mixer, u: torch.Tensor, P: int, t0: int) -> None:
    with torch.no_grad():
        base = mixer(u, transpoint=P)
        changed = u.clone()
        changed[:, t0:] += torch.randn_like(changed[:, t0:])
        after = mixer(changed, transpoint=P)
    if t0 > 0:
        err = rel_err(after[:, :t0], base[:, :t0])
        assert err < tol(u.dtype), f"invariant 3 (causality) fails at P={P}, t0={t0}: {err:.2e}"
    assert not torch.allclose(after[:, t0:], base[:, t0:])


T_TEST = 2 * CHUNK + 5  # 21: crosses chunk boundaries, not a multiple of the chunk
TRANSPOINTS = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, T_TEST - 1, T_TEST, T_TEST + 7]


@pytest.mark.parametrize("combo", _tiered(core_combos()), ids=lambda c: "attn={}-ssm={}-conv={}".format(*c))
def test_invariants_every_backend_combination(combo) -> None:
    attention, ssm, converter = combo
    dtype = dtype_for(combo)
    mixer = make_mixer(attention, ssm, converter, dtype)
    u = torch.randn(2, T_TEST, D_MODEL, dtype=dtype)
    check_invariants(mixer, u, TRANSPOINTS)
    for P, t0 in [(0, 5), (CHUNK, 3), (CHUNK, CHUNK + 2), (T_TEST, 7)]:
        check_causality(mixer, u, P, t0)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 40), P=st.integers(0, 50), t0=st.integers(0, 39), seed=st.integers(0, 2**16))
def test_invariants_random(T, P, t0, seed) -> None:
    mixer = make_mixer(seed=seed % 7)
    u = torch.randn(1, T, D_MODEL, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    check_invariants(mixer, u, [P])
    check_causality(mixer, u, P, min(t0, T - 1))


class ZeroConverter:
    registry_name = "zero"

    def __call__(self, k, v, dt, A, *, initial_state=None):
        B, H, P, N = k.shape[0], v.shape[2], v.shape[3], k.shape[3]
        return torch.zeros(B, H, P, N, dtype=torch.float32)


def test_checks_fail_for_zero_state_converter() -> None:
    mixer = make_mixer()
    mixer.converter = ZeroConverter()
    u = torch.randn(2, T_TEST, D_MODEL, dtype=torch.float64)
    with pytest.raises(AssertionError, match="invariant 1"):
        check_invariants(mixer, u, [CHUNK])


def test_p0_equals_mamba2_with_same_weights() -> None:
    mixer = make_mixer()
    mamba = Mamba2Mixer(
        D_MODEL, Mamba2Params(d_state=8, headdim=8, n_groups=2, expand=2), backends={"ssm": backend(SSM, "scan")}
    ).double()
    missing = mamba.load_state_dict(mixer.state_dict(), strict=True)
    assert not missing.missing_keys
    u = torch.randn(2, T_TEST, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(mixer(u, transpoint=0), mamba(u)) < 1e-10


def test_pT_equals_reference_attention_path() -> None:
    mixer = make_mixer(attention="sdpa")
    u = torch.randn(2, T_TEST, D_MODEL, dtype=torch.float64)
    ssd = mixer.ssd
    with torch.no_grad():
        z, xBC, _ = ssd.project(u)
        xBC = torch.nn.functional.silu(
            torch.nn.functional.conv1d(
                torch.nn.functional.pad(xBC.transpose(1, 2), (ssd.conv1d.width - 1, 0)),
                ssd.conv1d.weight,
                ssd.conv1d.bias,
                groups=ssd.conv_channels,
            ).transpose(1, 2)
        )
        x, Bm, Cm = ssd.heads(*torch.split(xBC, ssd.conv_splits, dim=-1))
        positions = torch.arange(T_TEST)
        q, k = rotary(Cm, positions), rotary(Bm, positions)
        y = grouped_attention(q, k, x, scale=PARAMS.d_state**-0.5, causal=True)
        y = ssd.norm(y.reshape(2, T_TEST, -1), None)
        expected = ssd.out_proj(y)
        assert rel_err(mixer(u, transpoint=T_TEST), expected) < 1e-10


@pytest.mark.parametrize("P", [0, 5, CHUNK, T_TEST])
def test_gradients_flow_through_both_paths(P) -> None:
    mixer = make_mixer(ssm="chunked", converter="chunked")
    reference = make_mixer(ssm="scan", converter="scan")
    reference.load_state_dict(mixer.state_dict())
    u = torch.randn(2, T_TEST, D_MODEL, dtype=torch.float64, requires_grad=True)
    u_ref = u.detach().clone().requires_grad_(True)
    mixer(u, transpoint=P).square().sum().backward()
    reference(u_ref, transpoint=P).square().sum().backward()
    assert rel_err(u.grad, u_ref.grad) < 1e-9
    for (name, p), (_, q) in zip(mixer.named_parameters(), reference.named_parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
            continue
        assert rel_err(p.grad, q.grad) < 1e-9, name


def test_negative_transpoint_is_an_error() -> None:
    with pytest.raises(ValueError, match="transpoint"):
        make_mixer()(torch.randn(1, 4, D_MODEL, dtype=torch.float64), transpoint=-1)
