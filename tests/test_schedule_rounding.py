"""Relative TransPoints: halves round up and a nonzero TransPoint never becomes 0."""

from __future__ import annotations

import pytest

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
