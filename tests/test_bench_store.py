"""``zoo bench --save`` and ``zoo bench compare``: saved runs on CPU with a tiny suite."""

from __future__ import annotations

import json
import re

import pytest

from zoo import bench_store
from zoo.cli import main


def _record(name: str, rows: list[tuple[str, float | None]], better: str = "lower") -> dict:
    return {
        "format": bench_store.FORMAT,
        "name": name,
        "suite": "ssm",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {"torch": "2.x", "device": "cpu", "cpu_threads": 2},
        "metric": {"name": "median ms" if better == "lower" else "tokens/s", "unit": "ms", "better": better},
        "rows": [{"key": key, "value": value, "note": "" if value else "FAILED PARITY"} for key, value in rows],
    }


def test_save_then_compare_through_the_cli(tmp_path, capsys, monkeypatch) -> None:
    storage = tmp_path / "bench"
    tiny = ["bench", "--suite", "ssm", "--seq-len", "16", "--repeats", "1", "--device", "cpu"]
    first = [*tiny, "--save", "base", "--storage", str(storage)]
    monkeypatch.setattr("sys.argv", ["zoo", *first])  # the command recorded is the process's
    assert main(first) == 0
    assert f"saved {storage / 'base.json'}" in capsys.readouterr().out
    saved = json.loads((storage / "base.json").read_text())
    assert saved["format"] == bench_store.FORMAT and saved["suite"] == "ssm" and saved["name"] == "base"
    assert saved["machine"]["torch"] and saved["machine"]["device_type"] == "cpu"
    assert saved["metric"]["better"] == "lower" and "--save base" in saved["command"]
    timed = {row["name"]: row for row in saved["rows"] if row["value"] is not None}
    assert {"scan", "chunked"} <= set(timed)
    assert timed["scan"]["rel_err"] == 0.0 and timed["chunked"]["rel_err"] < 1e-4  # parity kept with the timing
    assert timed["chunked"]["key"] == "ssm chunked B1-T16-H8-P32-N32-G1" and timed["chunked"]["value"] > 0

    assert main([*tiny, "--save", "--storage", str(storage)]) == 0  # default name: date-time and suite
    other = [name for name in bench_store.saved_names(storage) if name != "base"]
    assert len(other) == 1 and re.fullmatch(r"\d{8}-\d{6}-ssm", other[0])
    capsys.readouterr()
    # --storage before "compare" holds (the compare parser does not reset it)
    assert main(["bench", "--storage", str(storage), "compare", "base", other[0]]) == 0
    table = capsys.readouterr().out
    assert "A: base (ssm" in table and f"B: {other[0]} (ssm" in table
    assert re.search(r"\| ssm chunked B1-T16\S* \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", table)


def test_compare_ratios_point_the_metric_s_way() -> None:
    a = _record("a", [("x", 10.0), ("y", 4.0), ("gone", 1.0), ("broken", None)])
    b = _record("b", [("x", 5.0), ("y", 8.0), ("new", 2.0), ("broken", None)])
    table = bench_store.compare_runs(a, b)
    assert "| x | 10 | 5 | 2.00x |" in table  # half the time: twice as fast
    assert "| y | 4 | 8 | 0.50x |" in table
    assert "| gone | 1 | - | - | not in B |" in table and "| new | - | 2 | - | not in A |" in table
    assert "| broken | - | - | - | A and B: FAILED PARITY |" in table
    high_a = _record("a", [("x", 100.0)], better="higher")
    high_b = _record("b", [("x", 300.0)], better="higher")
    assert "| x | 100 | 300 | 3.00x |" in bench_store.compare_runs(high_a, high_b)
    with pytest.raises(bench_store.BenchStoreError, match="measure different things"):
        bench_store.compare_runs(a, high_b)


def test_missing_or_bad_runs_are_one_line(tmp_path, capsys) -> None:
    storage = tmp_path / "bench"
    storage.mkdir()
    (storage / "a.json").write_text(json.dumps(_record("a", [("x", 1.0)])))
    (storage / "junk.json").write_text("{not json")
    assert main(["bench", "compare", "a", "nope", "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no saved benchmark run 'nope'" in err and "a, junk" in err
    assert main(["bench", "compare", "a", "junk", "--storage", str(storage)]) == 2
    assert "is not a saved benchmark run" in capsys.readouterr().err
    with pytest.raises(bench_store.BenchStoreError, match="exists; pick another name"):
        bench_store.save_run("a", suite="ssm", rows=[], metric={}, device="cpu", command="", storage=storage)
    with pytest.raises(bench_store.BenchStoreError, match="no path"):
        bench_store.save_run("../up", suite="ssm", rows=[], metric={}, device="cpu", command="", storage=storage)


def test_bench_decode_saves_too(tmp_path, capsys) -> None:
    storage = tmp_path / "bench"
    argv = ["bench-decode", "--presets", "transformer-tiny", "--contexts", "8", "--steps", "2", "--device", "cpu"]
    assert main([*argv, "--save", "dec", "--storage", str(storage)]) == 0
    saved = bench_store.load_run("dec", storage)
    assert saved["suite"] == "decode" and saved["metric"]["name"] == "decode ms/step"
    (row,) = saved["rows"]
    assert row["key"] == "transformer-tiny ctx=8 B=1 eager float32" and row["value"] == row["ms_per_step"] > 0
    assert row["parity_rel_err"] < 1e-3


@pytest.mark.slow
def test_train_suite_saves_tokens_per_s(tmp_path, capsys) -> None:
    storage = tmp_path / "bench"
    argv = ["bench", "--suite", "train", "--device", "cpu", "--size", "tiny", "--tokens-per-step", "64"]
    argv += ["--steps", "1", "--warmup", "0", "--seq-lens", "32", "--no-compile", "--models", "transformer"]
    argv += ["--no-plot", "--out", str(tmp_path / "out"), "--save", "train", "--storage", str(storage)]
    assert main(argv) == 0
    saved = bench_store.load_run("train", storage)
    assert saved["metric"] == {"name": "tokens/s", "unit": "tokens/s", "better": "higher"}
    (row,) = saved["rows"]
    assert row["key"] == "transformer T=32" and row["value"] == row["tokens_per_s"] > 0
