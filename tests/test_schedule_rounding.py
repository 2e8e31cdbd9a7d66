"""Relative TransPoints: halves round up and a nonzero TransPoint never becomes 0."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.registry import SCHEDULE
from zoo.schedule import from_fractions, scale


def test_scale_rounds_halves_up_and_keeps_nonzero():
    assert scale(128, 32, 8192) == 1  # 0.5: round-half-to-even made this 0
    assert scale(1, 10, 8192) == 1  # far below one token, still an attention prefix
    assert scale(0, 32, 8192) == 0
    assert scale(2048, 2048, 8192) == 512
    assert scale(3, 1, 2) == 2  # 1.5 -> 2
    assert scale(5, 1, 2) == 3  # 2.5 -> 3 (half to even would give 2)
    assert from_fractions([0.0, 0.25, 0.5], 2) == [0, 1, 1]


@pytest.mark.parametrize("seq_len", [1, 2, 7, 32, 100, 2048])
def test_v9_relative_keeps_every_nonzero_transpoint(seq_len):
    schedule = SCHEDULE.get("v9").obj({"relative": True})
    transpoints = schedule.transpoints(8, seq_len)
    assert transpoints[0] == 0
    assert all(p >= 1 for p in transpoints[1:]), transpoints
    assert transpoints == sorted(transpoints)
    assert transpoints[-1] == seq_len


def test_constant_fraction_rounds_like_the_paper_lists():
    schedule = SCHEDULE.get("constant").obj({"fraction": 0.01})
    assert schedule.transpoints(2, 32) == [1, 1]


def test_fractions_round_as_written_not_as_their_binary_product():
    # 0.145 * 100 is 14.4999... in binary floating point: rounding that gave 14, not 14.5 -> 15
    assert scale(0.145, 100) == 15
    assert scale(0.29, 50) == 15
    assert from_fractions([0.175, 0.036], 180) == [32, 6]
    assert SCHEDULE.get("cyclic").obj({"fractions": [0.145]}).transpoints(1, 100) == [15]


@settings(max_examples=200, deadline=None)
@given(
    fractions=st.lists(st.floats(0, 1, allow_subnormal=True), min_size=1, max_size=8),
    seq_len=st.integers(1, 10_000),
    n_layers=st.integers(1, 12),
)
def test_no_path_turns_a_nonzero_transpoint_into_zero(fractions, seq_len, n_layers):
    """Every relative schedule (cyclic, random's evaluation and training draws, constant) and
    the training record's evaluation at any shorter length keep a nonzero value nonzero."""
    from zoo.schedule import TransPointRecord, cyclic

    expected_nonzero = [f > 0 for f in cyclic(fractions, n_layers)]
    per_layer = SCHEDULE.get("cyclic").obj({"fractions": fractions}).transpoints(n_layers, seq_len)
    assert [p > 0 for p in per_layer] == expected_nonzero
    random = SCHEDULE.get("random").obj({"fractions": fractions, "eval_fractions": fractions, "n_variants": 2})
    assert [p > 0 for p in random.transpoints(n_layers, seq_len)] == expected_nonzero
    for step in range(3):
        drawn = random.transpoints(n_layers, seq_len, step=step)
        assert [p > 0 for p in drawn] in ([f > 0 for f in v] for v in random.variants(n_layers))
    assert [p > 0 for p in SCHEDULE.get("constant").obj({"fraction": fractions[0]}).transpoints(1, seq_len)] == [
        fractions[0] > 0
    ]
    record = TransPointRecord(seq_len, tuple(per_layer))
    for length in (1, max(1, seq_len // 3), seq_len, 2 * seq_len):
        assert [p > 0 for p in record.at(length)] == expected_nonzero
