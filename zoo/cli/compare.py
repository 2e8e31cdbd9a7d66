"""``zoo compare MODEL...``: train several models on the same task, tokens and seeds, each at
its best learning rate, and report mean and 95% interval over seeds (table + JSON + plot).

Every model trains ``--seeds N`` times (seeds ``--seed``, ``--seed + 1``, ...; the seed sets
the initialisation and the data order; a recall task draws each seed its own evaluation set,
text evaluates every seed on the same validation windows). With
``--lrs A,B,C`` every model trains at every learning rate with every seed, and with ``--warmups
N,M`` at every warm-up length too (a recipe is a learning rate and a warm-up); the table reports
each model at the recipe with the lowest mean validation loss, and ``compare.json`` keeps every
run (its training curve thinned to about 100 points; every step is in the run's
``metrics.jsonl``). All runs see the same number of tokens; the table shows the parameter counts and a
note flags models more than 2% apart. Intervals: ``zoo.training.stats``.

A run that diverges (a non-finite loss) is recorded as diverged and the sweep goes on; a learning
rate at which any seed diverged is never the best. Each finished run is appended to
``OUT/runs.jsonl`` at once (``zoo.training.runs.RunJournal``), so an interrupted comparison
keeps its finished runs: the same command again trains only the runs that are missing (a run
is reused only when its spec, task, seed, learning rate, training settings, device and
precision are the same; another ``--out`` starts afresh).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from zoo.checkpoint import atomic_write_text
from zoo.cli._common import one_line_warnings
from zoo.cli._run_dir import free_run_dir, keep_earlier_table
from zoo.cli._task_args import add_task_args, task_from_args
from zoo.cli.compare_report import markdown_table, parameter_note, plot_rows, record_json, sweep_table, thin_rows
from zoo.cli.train import add_training_args, config_from_args
from zoo.errors import ZooError

HELP = "train several models with the same data, tokens and seeds, and compare them with intervals"
METRICS = ("eval_loss", "eval_accuracy", "eval_chance", "eval_ppl", "final_loss", "tokens_per_s")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help=HELP, description=HELP)
    parser.add_argument("models", nargs="*", help="presets or spec files; LABEL=REF names a column")
    parser.add_argument("--budget", type=int, default=None, help="optimizer steps per model (same as --steps)")
    add_task_args(parser)
    add_training_args(parser)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model and LR (default 3; >= 3 for intervals)")
    parser.add_argument(
        "--lrs",
        "--lr-sweep",
        default=None,
        metavar="LR,LR,...",
        help="learning rates to sweep (e.g. 1e-3,3e-3,1e-2): each model is reported at its best by validation loss",
    )
    parser.add_argument(
        "--warmups",
        "--warmup-sweep",
        default=None,
        metavar="STEPS,STEPS,...",
        help="warm-up lengths to sweep with the rates (e.g. 50,200): each model is reported at its best "
        "(rate, warm-up) by validation loss (default: --warmup alone)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="COMPARE_JSON",
        help="train nothing: summarise the runs of earlier compare.json (or runs.jsonl) files (same task and "
        "tokens) in one table",
    )
    parser.add_argument(
        "--eval-schedules",
        default=None,
        metavar="NAME,NAME,...",
        help="also evaluate each TransMamba model under these TransPoint schedules (e.g. v1,v2,...,v9,attention,ssm; "
        "trained = its own) and add a robustness table (zoo.training.robustness)",
    )
    parser.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.set_defaults(func=run, dir_flags=("out",))


def parse_entry(entry: str) -> tuple[str, str]:
    label, sep, ref = entry.partition("=")
    if sep and (not label.strip() or not ref.strip()):
        raise ZooError(f"{entry!r}: LABEL=REF needs both a label and a model, e.g. tm=transmamba-tiny")
    return (label, ref) if sep else (Path(entry).stem, entry)


def _sweep_values(text: str, flag: str, convert: Any, form: str, valid: Any, need: str) -> list[Any]:
    """A comma-separated sweep flag as its distinct values, sorted; a bad one is one line naming the flag."""
    try:
        parts = text.split(",")
        if any(not part.strip() for part in parts):  # "1e-3,,2e-3": as the other list flags, refused
            raise ValueError
        values = [convert(part) for part in parts]
    except ValueError:
        raise ZooError(f"{flag} takes comma-separated {form}; got {text!r}") from None
    if not values or not all(valid(value) for value in values):
        raise ZooError(f"{flag} needs {need}; got {text!r}")
    return sorted(set(values))


def parse_lrs(text: str | None, default: float) -> list[float]:
    if text is None:
        return [default]
    example = "e.g. 1e-3,3e-3,1e-2"
    need = f"positive finite learning rates, {example}"
    return _sweep_values(text, "--lrs", float, f"numbers, {example}", lambda lr: math.isfinite(lr) and lr > 0, need)


def parse_warmups(text: str | None, steps: int) -> list[int | None]:
    """``--warmups``: distinct warm-up lengths in steps, each in [0, --steps]; ``[None]`` (the
    ``--warmup`` flag or its default) when not given."""
    if text is None:
        return [None]
    need = f"step counts from 0 to --steps ({steps}), e.g. 50,200"
    return _sweep_values(text, "--warmups", int, "step counts, e.g. 50,200", lambda w: 0 <= w <= steps, need)


def run_name(lr: float, warmup: int | None, seed: int, *, lrs: int, warmups: int) -> str:
    """A run's directory under its model's: the swept settings and the seed."""
    parts = ([f"lr{lr:g}"] if lrs > 1 else []) + ([f"warmup{warmup}"] if warmups > 1 else [])
    return "-".join([*parts, f"seed{seed}"])


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (model, learning rate, seed)."""
    import torch

    from zoo.overrides import parse_backend_overrides, spec_with_backends, spec_with_recompute
    from zoo.training import robustness, runs
    from zoo.training.checkpointing import NonFiniteLossError
    from zoo.training.trainer import Trainer, resolve_device, resolve_precision

    if args.budget is not None:
        args.steps = args.budget
    if args.seeds < 1:
        raise ZooError(f"--seeds must be >= 1, got {args.seeds}")
    lrs = parse_lrs(args.lrs, args.lr)
    if args.warmups is not None and args.warmup is not None:
        raise ZooError("give --warmup (one length) or --warmups (a sweep), not both")
    warmups = parse_warmups(args.warmups, args.steps)
    eval_schedules = robustness.parse_eval_schedules(args.eval_schedules)
    seeds = [args.seed + i for i in range(args.seeds)]
    out = Path(args.out)
    entries = [parse_entry(entry) for entry in args.models]
    labels = [label for label, _ in entries]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:  # their seeds would pool into one row (and one run directory)
        raise ZooError(
            f"two models are labelled {', '.join(map(repr, twice))}; name them apart with LABEL=REF, "
            "e.g. a=x/transformer.json b=y/transformer.json"
        )
    backends = parse_backend_overrides(args.backend)
    if backends:  # each override must apply to some model (a transformer has no ssm slot)
        applied = set().union(*(spec_with_backends(runs.resolve_spec(ref), backends)[1] for _, ref in entries))
        unused = sorted(set(backends) - applied)
        if unused:
            raise ZooError(f"--backend {', '.join(unused)}: none of the compared models has that slot")
    # the spec each model trains (backend overrides applied): a journalled run is reused only
    # for the same model, not for an edited spec file of the same name
    specs = {
        label: spec_with_recompute(
            spec_with_backends(runs.resolve_spec(ref), backends)[0], mlp_hidden=args.mlp_hidden, ssd_gate=args.ssd_gate
        )
        for label, ref in entries
    }
    rows = []
    journal = runs.RunJournal(out / "runs.jsonl")
    for seed in seeds:
        task = task_from_args(argparse.Namespace(**{**vars(args), "seed": seed}))
        for label, ref in entries:
            for lr, warmup in itertools.product(lrs, warmups):
                swept = {} if warmup is None else {"warmup_steps": warmup}
                config = config_from_args(args, save_every=0, keep_last=1, seed=seed, lr=lr, **swept)
                head = f"[{label} lr={lr:g}" + ("" if warmup is None else f" warmup={warmup}") + f" seed={seed}]"
                device = resolve_device(config.device)
                settings = {  # what decides a run's result: the same settings, the same run
                    "model": label,
                    "spec": specs[label],
                    "task": task.describe(),
                    "config": config.model_dump(mode="json", exclude={"progress", "device", "precision"}),
                    "device": device.type,
                    "precision": resolve_precision(config.precision, device),
                    "eval_schedules": eval_schedules,
                }
                done = journal.get(settings)
                if done is not None:
                    print(f"{head} finished earlier: reused from {journal.path}", file=sys.stderr)
                    rows.append(done)
                    continue
                run_dir = free_run_dir(out / label / run_name(lr, warmup, seed, lrs=len(lrs), warmups=len(warmups)))
                torch.manual_seed(seed)
                model = runs.build_for_task(
                    ref,
                    task,
                    device=device,
                    backends=backends,
                    strict=False,
                    mlp_hidden=args.mlp_hidden,
                    ssd_gate=args.ssd_gate,
                )
                trainer = Trainer(model, task, config, out_dir=run_dir)
                print(f"{head} {trainer.n_params:,} params, {config.steps} steps", file=sys.stderr)
                tokens = config.steps * config.batch_size * config.grad_accum * task.seq_len
                row: dict[str, Any] = {
                    "task": {k: v for k, v in task.describe().items() if k != "seed"},
                    "model": label,
                    "ref": ref,
                    "seed": seed,
                    "lr": lr,
                    "warmup": config.warmup_steps,
                    "params": trainer.n_params,
                    "tokens": tokens,
                }
                start = time.perf_counter()
                try:
                    result = trainer.fit()
                except NonFiniteLossError as exc:  # expected at the top of a sweep: record it, go on
                    print(f"{head} diverged: {exc}", file=sys.stderr)
                    row.update(steps=trainer.step, diverged=str(exc), history=trainer.history)
                else:
                    extra = {}
                    if eval_schedules and (trained := robustness.trained_schedule(model)) is not None:
                        evaluated = robustness.evaluate_under(trainer, eval_schedules)
                        extra = {"trained_schedule": trained, "schedule_eval": evaluated}
                    row.update(
                        steps=result.steps,
                        final_loss=result.final_loss,
                        tokens_per_s=round(result.tokens_per_s),
                        **result.eval,
                        **extra,
                        history=result.history,
                    )
                row["wall_s"] = round(time.perf_counter() - start, 1)
                journal.add(settings, row)
                rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(per model at its best recipe, per model and recipe)``, a recipe being the learning rate
    and warm-up (``zoo.training.runs.recipe_key``): each metric as mean, 95% interval and the
    per-seed values; the best recipe has the lowest mean validation loss (one at which a seed
    diverged, or whose loss is NaN, counts as infinite)."""
    from zoo.training.runs import recipe_key
    from zoo.training.stats import t_interval

    cells: dict[tuple[str, tuple[float, int | None]], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["model"], recipe_key(row)), []).append(row)
    sweep = []
    for (model, (lr, warmup)), group in cells.items():
        cell: dict[str, Any] = {
            "model": model,
            "lr": lr,
            "warmup": warmup,
            "params": group[0]["params"],
            "tokens": group[0]["tokens"],
            "seeds": [r["seed"] for r in group],
            "diverged": sum(1 for r in group if r.get("diverged")),
        }
        for metric in METRICS:
            values = [float(r[metric]) for r in group if metric in r and r[metric] is not None]
            if values:
                cell[metric] = {**t_interval(values).to_dict(), "per_seed": values}
        sweep.append(cell)

    def score(cell: dict[str, Any]) -> float:
        mean = cell.get("eval_loss", {}).get("mean", math.inf)
        return mean if math.isfinite(mean) and not cell["diverged"] else math.inf

    best: dict[str, dict[str, Any]] = {}
    for cell in sweep:
        if cell["model"] not in best or score(cell) < score(best[cell["model"]]):
            best[cell["model"]] = cell
    order = list(dict.fromkeys(row["model"] for row in rows))
    return [best[model] for model in order], sweep


def merge(paths: list[str]) -> list[dict[str, Any]]:
    """The runs of several ``compare.json`` files, refused unless they share task and tokens."""
    from zoo.training.runs import RunJournal

    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            if path.endswith(".jsonl"):  # the journal of a comparison, perhaps one cut short
                found = RunJournal(Path(path), missing_ok=False).rows()
            else:
                found = json.loads(Path(path).read_text())["rows"]
            if not isinstance(found, list) or not all(isinstance(row, dict) and "model" in row for row in found):
                raise ValueError("its rows are not runs of zoo compare")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ZooError(f"--merge {path}: not a readable compare.json or runs.jsonl ({exc})") from None
        if not found:
            raise ZooError(f"--merge {path}: holds no finished run")
        rows += found
    for key in ("task", "tokens"):
        seen = {json.dumps(row.get(key), sort_keys=True) for row in rows}
        if len(seen) > 1:
            raise ZooError(f"--merge: the runs differ in {key} ({', '.join(sorted(seen))}); compare like with like")
    # A run given twice would count one seed as two (a falsely narrow interval), and one label
    # for two models would pool different models' seeds.
    runs: set[tuple[Any, Any, Any, Any]] = set()
    params: dict[Any, Any] = {}
    for row in rows:
        run = (row.get("model"), row.get("lr"), row.get("warmup"), row.get("seed"))
        if run in runs:
            warmup = "" if run[2] is None else f", warm-up {run[2]}"
            raise ZooError(
                f"--merge: the run of model {run[0]}, lr {run[1]}{warmup}, seed {run[3]} appears twice; "
                "merge each file once and runs with distinct seeds (a runs.jsonl that served commands "
                "with different settings holds one run per setting: merge their compare.json instead)"
            )
        runs.add(run)
        known = params.setdefault(row.get("model"), row.get("params"))
        if known != row.get("params"):
            raise ZooError(
                f"--merge: model {row.get('model')} has {known} parameters in one run and {row.get('params')} "
                "in another; two models share the label (rename one with LABEL=REF)"
            )
    return rows


def run(args: argparse.Namespace) -> int:
    from zoo.training import robustness
    from zoo.training.runs import warmups_vary

    if bool(args.models) == bool(args.merge):
        raise ZooError("zoo compare takes models to train or --merge COMPARE_JSON... to summarise (one of the two)")
    argv = getattr(args, "argv", sys.argv[1:])
    with one_line_warnings("compare"):  # one context: a warning repeated per run shows once
        rows = merge(args.merge) if args.merge else compare(args)
    summary, sweep = summarise(rows)
    out = Path(args.out)
    accuracy = any("eval_accuracy" in row for row in rows)
    # the warm-up is named where the runs swept it, even where every model's chosen one is the same
    table = markdown_table(summary, accuracy=accuracy, with_warmup=warmups_vary(sweep))
    seeds = max(len(cell["seeds"]) for cell in summary)
    interval = "mean ± 95% t-interval half-width over seeds" if seeds > 1 else "one seed: no interval"
    print(table)
    print(interval, file=sys.stderr)
    note = parameter_note(summary)
    if note:
        print(note, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    # the curves are thinned in compare.json (the plot below uses every step)
    record = {"argv": argv, "interval": interval, "summary": summary, "sweep": sweep, "rows": thin_rows(rows)}
    text = table + "\n\n" + interval + "\n" + (note + "\n" if note else "")
    rates = sweep_table(summary, sweep, accuracy=accuracy)
    if rates is not None:
        text += "\n" + rates + "\n"
        print(rates)
    robust = robustness.robustness(rows, summary)
    if robust is not None:
        record["robustness"] = robust
        tables = robustness.markdown(robust)
        text += "\n" + tables + "\n"
        print(tables)
    keep_earlier_table(out, argv)
    atomic_write_text(out / "compare.json", record_json(record))
    atomic_write_text(out / "compare.md", text)
    if not args.no_plot:
        print(f"plot: {plot_rows(rows, out / 'compare.png', accuracy=accuracy, summary=summary)}", file=sys.stderr)
    return 0
