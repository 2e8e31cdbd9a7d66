"""What ``zoo train`` and ``zoo compare`` check and decide about a run directory so that
nothing is lost: a new run never mixes with an earlier run's checkpoints, a comparison never
retrains over another's run or replaces its table (docs/training.md, "A run directory holds
one run")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zoo import checkpoint as ckpt
from zoo.errors import ZooError
from zoo.training.config import TrainConfig


def check_run_dir(args: argparse.Namespace, out: Path, config: TrainConfig) -> int | None:
    """Refuse what would mix or lose runs in ``out`` (one line each, reading only); the step the
    run already reached when ``--resume`` finds nothing left to train, else None."""
    if out.exists() and not out.is_dir():  # the default runs/<name> too, which no flag check saw
        raise ZooError(f"{out}: is a file, not a directory; choose another --out")
    if args.resume and args.overwrite:
        raise ZooError("--resume continues the run in --out and --overwrite deletes it: pass one of them")
    latest = ckpt.latest_checkpoint(out)
    if latest is None:
        return None
    step = ckpt.checkpoint_step(latest)
    if not args.resume and not args.overwrite:
        raise ZooError(
            f"--out {out} holds an earlier run (checkpoint at step {step}); pass --resume to continue it, --overwrite "
            "to start over there (deleting its checkpoints), or choose another --out"
        )
    if args.resume:
        check_resumed_model(out, args.spec)
        if step >= config.steps:
            return step
    return None


def check_resumed_model(out: Path, spec: Any) -> None:
    """Refuse ``--resume`` under another model name than the run in ``out`` was trained as
    (its ``run.json``): the checkpoint's own spec is what resumes, so the name would mislabel it."""
    try:
        recorded = json.loads((out / "run.json").read_text(encoding="utf-8")).get("spec")
    except (OSError, ValueError, AttributeError):
        return  # no record to check against: the checkpoint's spec decides, as always
    if isinstance(spec, str) and isinstance(recorded, str) and _same_model(spec, recorded):
        return
    if isinstance(spec, str) and isinstance(recorded, str):
        raise ZooError(
            f"--resume: {out} was trained as {recorded}, not {spec}; name {recorded} (the checkpoint's model "
            "resumes either way) or choose another --out"
        )


def _same_model(a: str, b: str) -> bool:
    """Two model references name the same model: equal names, or one spec file however spelled."""
    if a == b:
        return True
    return Path(a).is_file() and Path(b).is_file() and Path(a).resolve() == Path(b).resolve()


def free_run_dir(run_dir: Path) -> Path:
    """``run_dir``, or ``run_dir-2``, ``-3``... when it holds a checkpoint: a run of other settings
    (a finished run of the same settings is reused from the journal before this), or one whose
    journal entry was never written. Nothing a comparison finds is deleted."""
    candidate, n = run_dir, 1
    while ckpt.latest_checkpoint(candidate) is not None:
        n += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{n}")
    if candidate != run_dir:
        print(f"note: {run_dir} holds a run of other settings; this run goes to {candidate}", file=sys.stderr)
    return candidate


def keep_earlier_table(out: Path, argv: list[str]) -> None:
    """Before ``out/compare.*`` is written: an earlier table that another training command
    wrote is kept as ``compare-<its date>.*`` (the same command again, a resumed comparison,
    replaces its own table; a merge's table is rebuilt from its inputs, so it is replaced)."""
    path = out / "compare.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    earlier = recorded.get("argv") if isinstance(recorded, dict) else None
    if earlier == argv or (isinstance(earlier, list) and "--merge" in earlier):
        return
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
    for suffix in (".json", ".md", ".png"):
        source = out / f"compare{suffix}"
        if source.exists():
            source.replace(out / f"compare-{stamp}{suffix}")
    print(f"note: {out} held another command's comparison; kept it as compare-{stamp}.json/.md", file=sys.stderr)
