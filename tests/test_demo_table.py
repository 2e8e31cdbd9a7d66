"""``zoo demo``'s build step: every preset in one table row, not a per-layer plan each."""

from __future__ import annotations

from zoo.cli import demo


def test_one_row_per_preset_with_forward_check_or_meta_build(capsys) -> None:
    assert demo.build_all_presets(["transmamba-tiny", "hybrid-400m"]) is True
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| preset | parameters | layers | mixers | schedule | built on | forward")
    assert len(lines) == 2 + 2 + 1  # header, rule, two rows, the pointer to per-layer plans
    tiny, large = lines[2], lines[3]
    cells = [cell.strip() for cell in tiny.strip("|").split("|")]
    assert cells[:6] == ["transmamba-tiny", "1.6M", "6", "transmamba x6", "v9 relative=True", "cpu"]
    assert cells[6].startswith("ok ") and cells[6].endswith("s")
    assert "| mamba2 x11, attention x1 | - | meta | not run (meta) |" in large
    assert not any(line.lstrip().startswith("layer ") for line in lines)  # no per-layer plan


def test_a_preset_that_fails_to_build_is_a_failed_row() -> None:
    row = demo.preset_row("no-such-preset-tiny")
    assert row["ok"] is False and row["forward"].startswith("FAILED: ")
    table = demo.format_preset_table([row])
    assert "| no-such-preset-tiny | - | - | - | - | cpu | FAILED: " in table
