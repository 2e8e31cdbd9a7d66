"""Saved benchmark runs: ``zoo bench ... --save [NAME]`` and ``zoo bench compare A B``.

A saved run is one JSON file, ``STORAGE/NAME.json`` (``STORAGE`` is ``.benchmarks`` unless
``--storage`` says otherwise)::

    {"format": "zoo-bench/1", "name", "suite", "date", "command",
     "machine": {"torch", "python", "platform", "device", "device_type", "cpu_threads", ...},
     "metric": {"name": "median ms", "unit": "ms", "better": "lower"},
     "rows": [{"key": "ssm scan B1-T2048-...", "value": 12.3, ...the suite's own fields}]}

``key`` names a measurement across runs (suite, implementation, shape), ``value`` is the
figure compared; a row that was not timed (unavailable, failed parity) has ``value`` null
and says why in its own fields. Two runs compare row by row on ``key``.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import platform
import re
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError

FORMAT = "zoo-bench/1"
DEFAULT_STORAGE = ".benchmarks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BenchStoreError(ZooError):
    """A saved benchmark run is missing, unreadable, or cannot be written."""


def machine_info(device: str | torch.device) -> dict[str, Any]:
    """What a timing depends on besides the code: versions, device, threads."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device_type": device.type,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu"),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    if importlib.util.find_spec("triton") is not None:
        import triton

        info["triton"] = getattr(triton, "__version__", "?")
    return info


def default_name(suite: str, now: datetime.datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-SUITE`` (UTC), so names sort by date."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{suite}"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BenchStoreError(
            f"--save {name!r}: a run name is letters, digits and . _ + - (no path), at most 128 characters"
        )
    return name


def check_save_name(name: str, storage: str | Path = DEFAULT_STORAGE) -> Path:
    """The path ``--save NAME`` writes; refused (before a benchmark runs, too) when the name is
    malformed or a run of that name exists."""
    path = Path(storage) / f"{_check_name(name)}.json"
    if path.exists():
        raise BenchStoreError(f"--save {name!r}: {path} exists; pick another name or delete it")
    return path


def save_run(
    name: str,
    *,
    suite: str,
    rows: list[dict[str, Any]],
    metric: dict[str, str],
    device: str | torch.device,
    command: str,
    storage: str | Path = DEFAULT_STORAGE,
) -> Path:
    """Write ``storage/name.json`` atomically; an existing run of that name is never overwritten."""
    from zoo.checkpoint import atomic_write_text

    path = check_save_name(name, storage)
    for row in rows:
        if "key" not in row or "value" not in row:
            raise ValueError(f"a saved row needs 'key' and 'value': {row!r}")
    record = {
        "format": FORMAT,
        "name": name,
        "suite": suite,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(device),
        "metric": metric,
        "rows": rows,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        raise BenchStoreError(f"cannot save the benchmark run to {path}: {exc.strerror or exc}") from None
    return path


def saved_names(storage: str | Path = DEFAULT_STORAGE) -> list[str]:
    return sorted(path.stem for path in Path(storage).glob("*.json"))


def load_run(name: str, storage: str | Path = DEFAULT_STORAGE) -> dict[str, Any]:
    """A saved run by name (in ``storage``) or by path to its JSON file."""
    path = Path(name)
    if not (name.endswith(".json") and path.is_file()):
        path = Path(storage) / f"{name}.json"
    if not path.is_file():
        names = saved_names(storage)
        saved = f"saved there: {', '.join(names[-10:])}" if names else "nothing is saved there"
        raise BenchStoreError(f"no saved benchmark run {name!r} in {storage} ({saved})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchStoreError(f"{path} is not a saved benchmark run (invalid JSON: {exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("rows"), list):
        raise BenchStoreError(f"{path} is not a saved benchmark run (format {FORMAT!r} expected)")
    return record


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two saved runs side by side, row by row on ``key``, with the speed-up of B over A
    (above 1: B is better, whichever way the metric points)."""
    metric_a, metric_b = a.get("metric", {}), b.get("metric", {})
    if metric_a.get("name") != metric_b.get("name"):
        raise BenchStoreError(
            f"cannot compare {a['name']!r} ({metric_a.get('name')}) with {b['name']!r} ({metric_b.get('name')}): "
            "they measure different things"
        )
    lower_is_better = metric_a.get("better", "lower") == "lower"
    lines = []
    for label, run in (("A", a), ("B", b)):
        machine = run.get("machine", {})
        lines.append(
            f"{label}: {run['name']} ({run.get('suite')}, {run.get('date')}; torch {machine.get('torch')}, "
            f"{machine.get('device')}, {machine.get('cpu_threads')} threads)"
        )
    unit = metric_a.get("unit", "")
    lines += [
        "",
        f"| measurement | A {unit} | B {unit} | speed-up B vs A | note |",
        "|---|---:|---:|---:|---|",
    ]
    rows_a = {row["key"]: row for row in a["rows"]}
    rows_b = {row["key"]: row for row in b["rows"]}
    for key in [*rows_a, *(k for k in rows_b if k not in rows_a)]:
        row_a, row_b = rows_a.get(key), rows_b.get(key)
        value_a = row_a.get("value") if row_a else None
        value_b = row_b.get("value") if row_b else None
        ratio = "-"
        if value_a and value_b:
            ratio = f"{(value_a / value_b) if lower_is_better else (value_b / value_a):.2f}x"
        notes = {}
        for label, row in (("A", row_a), ("B", row_b)):
            if row is None:
                notes[f"not in {label}"] = []
            elif row.get("value") is None:
                reason = row.get("note") or row.get("error") or row.get("skipped") or "not timed"
                notes.setdefault(reason, []).append(label)
        notes = [f"{' and '.join(labels)}: {reason}" if labels else reason for reason, labels in notes.items()]
        lines.append(f"| {key} | {_fmt(value_a)} | {_fmt(value_b)} | {ratio} | {'; '.join(notes)} |")
    return "\n".join(lines)
