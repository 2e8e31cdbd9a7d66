"""Presets are parameter-matched: at every size the four architectures are within 2% of
each other (counted on the meta device), and the attention blocks' SwiGLU width is the
grid point nearest to an exact match, so a change to one block's shape that is not
re-matched fails here even while it stays inside 2%."""

from __future__ import annotations

import pytest

import zoo
from zoo.models.presets import ARCHS, SIZES, _spec

TOLERANCE = 0.02
GRID = {"tiny": 64, "small": 64, "400m": 128, "1.5b": 128}
# transformer_d_ff at tiny: 64 is too coarse for 2% (its exact match is 486.6)
GRID_OF = {("tiny", "transformer_d_ff"): 32}


def _count(spec_or_name) -> int:
    return zoo.build(spec_or_name, device="meta").num_parameters()


@pytest.mark.parametrize("size", list(SIZES))
def test_architectures_match_within_two_percent(size: str) -> None:
    counts = {arch: _count(f"{arch}-{size}") for arch in ARCHS}
    reference = counts["transmamba"]
    for arch, n in counts.items():
        assert abs(n - reference) <= TOLERANCE * reference, (
            f"{arch}-{size}: {n:,} parameters, {100 * (n / reference - 1):+.2f}% from transmamba-{size} "
            f"({reference:,}); re-match attn_d_ff in zoo/models/presets.py"
        )


def _transformer_with_d_ff(size: str, d_ff: int, *, tied: bool) -> dict:
    spec = _spec("transformer", size)
    spec["layers"] = [{**layer, "mlp": {"d_ff": d_ff}} for layer in spec["layers"]]
    return {**spec, "tie_embeddings": tied}


@pytest.mark.parametrize("key,tied", [("attn_d_ff", True), ("transformer_d_ff", False)])
@pytest.mark.parametrize("size", list(SIZES))
def test_attention_d_ff_is_the_nearest_grid_point(size: str, key: str, tied: bool) -> None:
    """attn_d_ff matches an attention block to an SSD block (tied heads, as in the hybrid);
    transformer_d_ff also pays for the transformer's untied LM head."""
    d_ff, grid = SIZES[size][key], GRID_OF.get((size, key), GRID[size])
    assert d_ff % grid == 0, f"{size}: {key} {d_ff} is not a multiple of {grid}"
    assert SIZES[size]["d_ff"] % grid == 0
    target = _count(f"mamba2-{size}")
    misses = {
        candidate: abs(_count(_transformer_with_d_ff(size, candidate, tied=tied)) - target)
        for candidate in (d_ff - grid, d_ff, d_ff + grid)
    }
    best = min(misses, key=misses.get)
    assert best == d_ff, (
        f"{size}: {key} {d_ff} misses mamba2-{size} by {misses[d_ff]:,} parameters, {best} by {misses[best]:,}"
    )


def test_presets_use_their_communitys_init_and_head() -> None:
    recipes = {arch: zoo.resolve_spec(f"{arch}-tiny") for arch in ARCHS}
    assert {arch: (spec.init, spec.tie_embeddings) for arch, spec in recipes.items()} == {
        "transformer": ("llama", False),
        "transmamba": ("mamba", True),
        "mamba2": ("mamba", True),
        "hybrid": ("mamba", True),
    }


def test_hybrid_attention_layers_use_the_matched_block() -> None:
    spec = zoo.resolve_spec("hybrid-400m")
    widths = {block.mixer.name: block.mlp.d_ff for block in spec.layers}
    assert widths == {"mamba2": SIZES["400m"]["d_ff"], "attention": SIZES["400m"]["attn_d_ff"]}


def test_400m_keeps_the_paper_shape() -> None:
    spec = zoo.resolve_spec("transmamba-400m")
    mixer = spec.layers[0].mixer.params
    assert (spec.d_model, spec.n_layers, spec.layers[0].mlp.d_ff) == (1536, 12, 4096)
    assert (mixer["headdim"], mixer["d_state"], mixer["n_groups"], mixer["expand"]) == (64, 128, 8, 2)
    assert zoo.resolve_spec("transformer-400m").layers[0].mixer.params["n_heads"] == 16


def test_plan_prints_the_parameter_count(capsys) -> None:
    from zoo.cli import main

    assert main(["plan", "transmamba-400m", "--seq-len", "2048"]) == 0
    n = _count("transmamba-400m")
    assert f"parameters: {n / 1e6:.1f}M (embedding 49.15M, tied with the LM head)" in capsys.readouterr().out
