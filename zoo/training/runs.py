"""Glue shared by the CLI commands and the demo: specs with the task's vocabulary, tasks
rebuilt from a checkpoint's description, run summaries, and the journal of a comparison's
finished runs (``RunJournal``)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from zoo.data.tasks import SYNTHETIC, Task, make_task
from zoo.data.tokenizer import Tokenizer
from zoo.errors import ZooError
from zoo.overrides import spec_with_backends, spec_with_recompute

LOCK_FILE = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # run dir -> (fd, depth): this process's locks


class RunLockedError(ZooError):
    """Another process is writing into the run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` exclusively (``fcntl.flock``) for the block; re-entrant in one process.

    A run directory has one writer: a second ``zoo train`` into it fails at once, naming
    the directory and the holder's pid, instead of mixing its metrics and checkpoints with
    the first's. flock locks belong to the open file, so the kernel drops the lock when
    the holder exits or dies: a stale ``.lock`` file locks nothing.
    """
    import fcntl

    run_dir = Path(run_dir).resolve()
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        yield run_dir  # one process of a multi-process run: rank 0 holds the lock for the job
        return
    if run_dir in _held:
        fd, depth = _held[run_dir]
        _held[run_dir] = (fd, depth + 1)
        try:
            yield run_dir
        finally:
            fd, depth = _held[run_dir]
            _held[run_dir] = (fd, depth - 1)
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ZooError(f"run directory {run_dir} is a file; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(
            f"run directory {run_dir} is in use by another process (pid {holder}, lock {path}); "
            "wait for it to finish or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = (fd, 1)
    try:
        yield run_dir
    finally:
        _, depth = _held.pop(run_dir)
        os.close(fd)  # closing the only descriptor releases the flock


def resolve_spec(ref: Any) -> dict[str, Any]:
    """A preset name, a spec file, a dict or a ModelSpec, as a JSON dict."""
    from zoo.builder import resolve_spec as builder_resolve_spec

    return builder_resolve_spec(ref).model_dump(mode="json")


def spec_with_vocab(spec: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The spec with ``vocab_size`` set to the task's vocabulary."""
    if "vocab_size" not in spec:
        raise ZooError("model spec has no vocab_size field; cannot fit it to the tokenizer")
    return {**spec, "vocab_size": vocab_size}


def build_for_task(
    ref: Any,
    task: Task,
    *,
    device: str | torch.device | None = None,
    backends: dict[str, str] | None = None,
    strict: bool = True,
    mlp_hidden: str | None = None,
    ssd_gate: str | None = None,
) -> torch.nn.Module:
    """Build the model ``ref`` names with the vocabulary of ``task`` (compile is the trainer's
    job), with ``backends`` overriding the spec's backend slots (see
    :func:`spec_with_backends`; with ``strict``, a slot that no layer has is an error, and
    ``zoo compare`` checks that across its models instead). The weights are initialised on
    the CPU, so a seed gives the same model on every device; the backends are checked
    against ``device``, where the trainer will run it. ``mlp_hidden`` / ``ssd_gate`` set the
    spec's training-memory opt-ins (:func:`zoo.overrides.spec_with_recompute`)."""
    from zoo.builder import build
    from zoo.registry import PRESET

    spec = resolve_spec(ref)
    if not (isinstance(ref, str) and ref in PRESET) and spec.get("vocab_size") != task.vocab_size:
        # a preset's vocabulary is a placeholder; one the user wrote is worth a word
        warnings.warn(
            f"the spec's vocab_size {spec.get('vocab_size')} is replaced by the task's {task.vocab_size} "
            "(the tokenizer or task decides the vocabulary)",
            stacklevel=2,
        )
    spec = spec_with_vocab(spec, task.vocab_size)
    if backends:
        spec, _ = spec_with_backends(spec, backends, strict=strict, label=repr(ref))
    spec = spec_with_recompute(spec, mlp_hidden=mlp_hidden, ssd_gate=ssd_gate)
    return build(spec, device="cpu", compile=False, support_device=device)


def task_from_description(
    description: dict[str, Any],
    *,
    tokenizer: Tokenizer | None = None,
    data: str | None = None,
    seq_len: int | None = None,
) -> Task:
    """Rebuild the task a checkpoint was trained on (``data``/``seq_len`` override it)."""
    if not isinstance(description, dict):
        raise ZooError(f"a checkpoint's task description must be a JSON object, got {type(description).__name__}")
    try:
        return _task_from_description(description, tokenizer=tokenizer, data=data, seq_len=seq_len)
    except (KeyError, TypeError, ValueError) as exc:
        detail = str(exc) if isinstance(exc, ZooError) else repr(exc)  # a task's own refusal reads as it is
        raise ZooError(f"cannot rebuild the checkpoint's task: {detail}") from exc


def _task_from_description(
    description: dict[str, Any], *, tokenizer: Tokenizer | None, data: str | None, seq_len: int | None
) -> Task:
    kind = description.get("task")
    seq_len = seq_len or description["seq_len"]
    if kind == "text":
        recorded = description.get("corpus")
        if data is None and recorded is not None and not _is_builtin_corpus(recorded):
            # A checkpoint may come from anyone: a path it names is not read unless asked for.
            raise ZooError(
                f"the checkpoint was trained on the corpus {str(recorded)[:200]!r}; a path recorded in a "
                "checkpoint is not read on its own: pass it (or another corpus) explicitly with --data"
            )
        return make_task(
            "text",
            data=data or recorded,
            seq_len=seq_len,
            tokenizer=tokenizer or "byte",
            seed=description.get("seed", 0),
        )
    if kind in SYNTHETIC:
        if data is not None:  # a synthetic task draws its sequences; a corpus would go unread
            raise ZooError(f"--data applies to text checkpoints; this one was trained on the {kind} task")
        items = description.get(SYNTHETIC[kind][2])
        # A training mixture belongs to the length it was trained at; evaluating at another
        # length asks num_items alone, so the mixture (whose counts may not fit there) is left out.
        same_length = seq_len == description["seq_len"]
        return make_task(
            kind,
            seq_len=seq_len,
            vocab_size=description["vocab_size"],
            num_items=items,
            seed=description.get("seed", 0),
            eval_examples=description.get("eval_examples", 256),
            train_items=description.get("train_items") if same_length else None,
            train_seq_lens=description.get("train_seq_lens") if same_length else None,
        )
    raise ZooError(f"cannot rebuild task {kind!r} from a checkpoint description")


def corpus_drift(description: dict[str, Any], task: Task) -> str | None:
    """A one-line warning when ``task``, rebuilt from a checkpoint's recorded text corpus, is not
    the text that checkpoint saw: its split holds another number of tokens (a built-in corpus
    follows the machine's Python; a file may have changed). None when they agree or when the
    description records no counts."""
    rebuilt = task.describe()
    if description.get("task") != "text" or rebuilt.get("corpus") != description.get("corpus"):
        return None
    differ = [
        f"{split} {description[key]:,} -> {rebuilt[key]:,}"
        for split, key in (("train", "train_tokens"), ("validation", "val_tokens"))
        if key in description and description[key] != rebuilt.get(key)
    ]
    if not differ:
        return None
    return (
        f"corpus {rebuilt['corpus']!r} here is not the text the checkpoint was trained on (tokens: "
        f"{', '.join(differ)}), so this loss is on other text; pass the training text with --data"
    )


def _is_builtin_corpus(name: Any) -> bool:
    return isinstance(name, str) and (name == "builtin" or name.startswith("builtin:"))


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table; floats with 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, int) and value >= 10_000:
            return f"{value:,}"
        return "-" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


Curves = dict[str, list[tuple[int, float]]]


def smooth(points: list[tuple[int, float]], beta: float = 0.9) -> list[tuple[int, float]]:
    """Bias-corrected exponential moving average, for noisy per-step training losses."""
    out, average = [], 0.0
    for i, (step, value) in enumerate(points, start=1):
        average = beta * average + (1 - beta) * value
        out.append((step, average / (1 - beta**i)))
    return out


def plot_panels(
    panels: list[tuple[str, str, Curves]],
    path: str | Path,
    *,
    baselines: dict[str, float] | None = None,
) -> Path:
    """PNG with one panel per ``(title, ylabel, {label: [(step, value)]})``; needs matplotlib (the ``plot`` extra).

    ``baselines`` draws labelled horizontal lines on the first panel.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ZooError("plots need matplotlib: pip install 'zoo[plot]'") from exc
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (title, ylabel, curves) in zip(axes[0], panels, strict=True):
        for label, points in curves.items():
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(
                    steps,
                    values,
                    label=label,
                    linewidth=1.4,
                    marker="o" if len(points) < 12 else None,
                )
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for label, value in (baselines or {}).items():
        axes[0][0].axhline(value, linestyle="--", color="gray", linewidth=1, label=label)
    for ax in axes[0]:
        ax.legend(fontsize=8)
    return _save_figure(fig, path)


def _save_figure(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


Band = list[tuple[int, float, float, float]]  # (step, mean, low, high)


def seed_band(per_seed: list[list[tuple[int, float]]]) -> Band:
    """Mean and 95% t-interval over seeds at each step that every seed logged (one seed: no band)."""
    from zoo.training.stats import t_interval

    tables = [dict(points) for points in per_seed if points]
    if not tables:
        return []
    steps = sorted(set.intersection(*(set(table) for table in tables)))
    band = []
    for step in steps:
        interval = t_interval([table[step] for table in tables])
        low = interval.low if interval.low is not None else interval.mean
        high = interval.high if interval.high is not None else interval.mean
        band.append((step, interval.mean, low, high))
    return band


def plot_bands(panels: list[tuple[str, str, dict[str, Band], float | None]], path: str | Path) -> Path:
    """PNG with one panel per ``(title, ylabel, {label: band}, floor)``: each label's mean curve
    with its shaded 95% band, and ``floor`` (a chance accuracy) as a dashed line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ZooError("plots need matplotlib: pip install 'zoo[plot]'") from exc
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (title, ylabel, curves, floor) in zip(axes[0], panels, strict=True):
        for label, band in curves.items():
            if band:
                steps, mean, low, high = zip(*band, strict=True)
                (line,) = ax.plot(steps, mean, label=label, linewidth=1.4, marker="o" if len(band) < 12 else None)
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if floor is not None:
            ax.axhline(floor, linestyle="--", color="gray", linewidth=1, label=f"chance {floor:.3g}")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save_figure(fig, path)


def recipe_key(run: dict[str, Any]) -> tuple[float, int | None]:
    """What a comparison sweeps besides the seed: ``(lr, warmup steps)`` of a run or a summary
    cell. Runs recorded before the warm-up was part of a row read ``None`` for it."""
    return run["lr"], run.get("warmup")


def warmups_vary(runs: list[dict[str, Any]]) -> bool:
    """Whether ``runs`` (rows, summary cells or robustness entries) hold more than one warm-up:
    the tables name the warm-up only then."""
    return len({run.get("warmup") for run in runs}) > 1


class RunJournal:
    """The finished runs of a comparison, one JSON line each (``settings`` and ``row``), written
    as each run ends; a run whose settings match a line is not trained again. A line cut short
    by an interruption is ignored."""

    def __init__(self, path: Path, *, missing_ok: bool = True) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = False  # the last line was cut short: the next one starts on a line of its own
        if path.exists() or not missing_ok:
            text = path.read_text()
            self.torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    row = entry["row"]
                    if "warmup" not in row:  # a run journalled before rows carried it: its settings have it
                        config = entry["settings"].get("config")
                        row["warmup"] = config.get("warmup_steps") if isinstance(config, dict) else None
                    self.done[self._key(entry["settings"])] = row
                except (ValueError, KeyError, TypeError):
                    continue

    @staticmethod
    def _key(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True)

    def rows(self) -> list[dict[str, Any]]:
        return list(self.done.values())

    def get(self, settings: dict[str, Any]) -> dict[str, Any] | None:
        return self.done.get(self._key(settings))

    def add(self, settings: dict[str, Any], row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(("\n" if self.torn else "") + json.dumps({"settings": settings, "row": row}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.torn = False
        self.done[self._key(settings)] = row
