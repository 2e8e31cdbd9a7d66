"""FSDP2 on several GPUs of one host: throughput scaling, loss agreement, resume, a killed rank.

Each subcommand starts its training processes through zoo's own entry points (``torchrun``
over ``benchmarks/fsdp_1gpu.py``, ``torchrun -m zoo train`` or ``python -m zoo train``), each
under its own time limit, and writes one JSON report ``RESULTS/fsdp-scaling-TAG-KIND-*.json``
(TAG: the machine, e.g. ``h200x2``); ``report`` prints them as docs/training.md's tables::

    python benchmarks/fsdp_scaling.py throughput --presets transmamba-400m,transformer-400m
    python benchmarks/fsdp_scaling.py throughput --presets transmamba-1.5b --ac full --batch-size 1
    python benchmarks/fsdp_scaling.py curve      # 2 processes x batch b vs 1 process x batch 2b, 50 steps
    python benchmarks/fsdp_scaling.py resume     # the 2-process run's middle checkpoint, on 1 process
    python benchmarks/fsdp_scaling.py kill       # SIGKILL rank 1 mid-run, time rank 0's exit
    python benchmarks/fsdp_scaling.py report

Checkpoints and logs go under ``--work-dir`` (a temporary folder by default), never under
the results folder. ``--device cpu`` runs every subcommand on gloo (a dry run with a tiny preset).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdp_scaling_procs import ROOT, TORCHRUN, ZOO, env, free_port, launch, machine, shown  # noqa: E402
from fsdp_scaling_report import loss_agreement, per_gpu, report_name, scaling_efficiency, summary_markdown  # noqa: E402


def _header(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    import torch

    return {
        "benchmark": "fsdp_scaling",
        "kind": kind,
        "tag": args.tag,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": args.device_name,
        "torch": torch.__version__,
        "compile": not args.no_compile,
        "command": "python benchmarks/fsdp_scaling.py " + shlex.join(args.argv),
    }


def _write(args: argparse.Namespace, name: str, report: dict[str, Any]) -> Path:
    path = Path(args.results_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


def _launch(args: argparse.Namespace, command: list[str], name: str) -> dict[str, Any]:
    """``launch`` within what is left of ``--budget-s`` (a run that cannot start in time is
    skipped); 20 s stay in reserve for stopping a run that overruns and writing the report."""
    left = args.deadline - time.monotonic() - 20
    if left < 30:
        return {"result": f"skipped (--budget-s {args.budget_s:g} spent)"}
    return launch(command, Path(args.log_dir) / f"{name}.log", min(args.run_timeout, left))


def _losses(run_dir: Path) -> tuple[list[float], float | None]:
    """Per-step train losses (step 1 first) and the last evaluation loss of a run's metrics."""
    from zoo.training import read_jsonl

    path = run_dir / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    evals = [row["eval_loss"] for row in rows if "eval_loss" in row]
    return [row["loss"] for row in sorted(rows, key=lambda row: row["step"])], (evals[-1] if evals else None)


# ---------------------------------------------------------------- throughput


def throughput(args: argparse.Namespace) -> None:
    nprocs = [int(n) for n in args.nprocs.split(",")]
    for preset in args.presets.split(","):
        report = _header(args, "throughput")
        report.update(
            preset=preset,
            seq_len=args.seq_len,
            vocab_size=args.vocab,
            batch_size_per_gpu=args.batch_size,
            activation_checkpointing=args.ac,
            backends=args.backend,
            runs=[],
            scaling={},
        )
        for nproc in nprocs:
            print(f"{preset}: {nproc} process(es), activation checkpointing {args.ac}", file=sys.stderr)
            out = Path(args.work_dir) / f"throughput-{preset}-{nproc}.json"
            out.unlink(missing_ok=True)
            command = [*TORCHRUN, f"--nproc_per_node={nproc}", str(ROOT / "benchmarks" / "fsdp_1gpu.py")]
            command += ["--model", preset, "--vocab", str(args.vocab), "--seq-len", str(args.seq_len)]
            command += ["--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps)]
            command += ["--modes", args.ac, "--device", args.device, "--out", str(out)]
            command += ["--no-compile"] * args.no_compile + [f"--backend={b}" for b in args.backend]
            run: dict[str, Any] = {"world_size": nproc}
            run.update(_launch(args, command, f"throughput-{preset}-{nproc}"))
            run["command"] = shown(command).replace(str(out), "OUT.json").replace(str(ROOT) + os.sep, "")
            if "result" not in run:
                row = json.loads(out.read_text())["runs"][0]
                run.update(row)
                if row.get("result", "ok") == "ok":
                    run["tokens_per_s_per_gpu"] = round(per_gpu(row["tokens_per_s"], nproc))
                    peaks = [p for p in row.get("peak_memory_gib_per_rank", [row["peak_memory_gib"]]) if p is not None]
                    run["peak_memory_gib"] = max(peaks) if peaks else None
            report["runs"].append(run)
        one = next((r for r in report["runs"] if r["world_size"] == 1 and "tokens_per_s_per_gpu" in r), None)
        for run in report["runs"]:
            if one is not None and run["world_size"] > 1 and "tokens_per_s_per_gpu" in run:
                efficiency = scaling_efficiency(one["tokens_per_s"], run["tokens_per_s"], run["world_size"])
                report["scaling"][str(run["world_size"])] = {"efficiency": round(efficiency, 4)}
        _write(args, report_name(args.tag, "throughput", preset, "" if args.ac == "none" else f"ac{args.ac}"), report)


# ---------------------------------------------------------------- loss curves and resume


def _train_args(args: argparse.Namespace) -> list[str]:
    """The flags every run of the comparison shares (resume must repeat the task's)."""
    train = [args.preset, "--task", "text", "--seq-len", str(args.seq_len), "--steps", str(args.steps)]
    train += ["--warmup", str(args.warmup_steps), "--lr", str(args.lr), "--seed", "0", "--device", args.device]
    return train + ["--eager-eval", "--no-progress"] + ["--no-compile"] * args.no_compile


def _one_process(args: argparse.Namespace) -> list[str]:
    """How the one-process runs start: under torchrun (FSDP over one rank: the same code path
    and mixed precision as the N-process run, so only the data-parallel split differs) or
    plain (no process group: fp32 parameters under autocast, whole-model compile)."""
    if args.one_launcher == "torchrun":
        return [*TORCHRUN, "--nproc_per_node=1", "-m", "zoo", "train"]
    return [*ZOO, "train"]


def curve(args: argparse.Namespace) -> None:
    work = Path(args.work_dir)
    save_at = args.save_at or args.steps // 2
    train = _train_args(args)
    report = _header(args, "curve")
    report.update(preset=args.preset, seq_len=args.seq_len, task="text (builtin corpus, bytes)", steps=args.steps)
    report.update(lr=args.lr, warmup_steps=args.warmup_steps, save_at=save_at, train_args=train)
    global_batch = args.nproc * args.batch_size
    one_batch, one_accum = (global_batch, 1) if args.split == "batch" else (args.batch_size, args.nproc)
    # W ranks with batch b draw rows of the one-process batch W*b at micro-step 0; accumulation
    # draws other micro-steps, so only the "batch" split sees the very same tokens
    report.update(global_batch=global_batch, same_data=args.split == "batch", one_launcher=args.one_launcher)
    runs = {
        "two_gpu": (
            [*TORCHRUN, f"--nproc_per_node={args.nproc}", "-m", "zoo", "train", *train],
            ["--batch-size", str(args.batch_size), "--save-every", str(save_at), "--dist-timeout", "300"],
            {"world_size": args.nproc, "batch_size": args.batch_size, "grad_accum": 1},
        ),
        "one_gpu": (
            [*_one_process(args), *train],
            ["--batch-size", str(one_batch), "--grad-accum", str(one_accum)],
            {"world_size": 1, "batch_size": one_batch, "grad_accum": one_accum},
        ),
    }
    for key, (command, extra, facts) in runs.items():
        run_dir = work / f"curve-{facts['world_size']}proc"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [*command, *extra, "--out", str(run_dir)]
        print(f"curve: {key}", file=sys.stderr)
        entry = {**facts, **_launch(args, command, f"curve-{key}")}
        entry["command"] = shown(command).replace(str(run_dir), "RUN")
        entry["losses"], entry["eval_loss"] = _losses(run_dir)
        entry["run_dir"] = str(run_dir)
        report[key] = entry
    two, one = report["two_gpu"]["losses"], report["one_gpu"]["losses"]
    if len(two) == len(one) == args.steps:
        report["agreement"] = loss_agreement(one, two, args.tolerance)
    _write(args, report_name(args.tag, "curve"), report)


def resume(args: argparse.Namespace) -> None:
    source = Path(args.results_dir) / report_name(args.tag, "curve")
    if not source.exists():
        sys.exit(f"resume needs the curve report {source}: run the curve subcommand first")
    made = json.loads(source.read_text())
    two = made["two_gpu"]
    run_dir, save_at, steps = Path(two["run_dir"]), made["save_at"], made["steps"]
    keep = f"step-{save_at:08d}"
    if not (run_dir / "checkpoints" / keep).is_dir():
        sys.exit(f"{run_dir}/checkpoints has no {keep}: the curve run did not save it")
    target = Path(args.work_dir) / "resume-1proc"
    shutil.rmtree(target, ignore_errors=True)
    # as if the job died after the middle save: only that checkpoint travels
    shutil.copytree(
        run_dir, target, ignore=lambda folder, names: [n for n in names if n.startswith("step-") and n != keep]
    )
    batch = made["global_batch"]
    command = [*_one_process(args), *made["train_args"], "--batch-size", str(batch), "--out", str(target), "--resume"]
    report = _header(args, "resume")
    report.update(preset=made["preset"], seq_len=made["seq_len"], steps=steps, from_step=save_at)
    report.update(saved_world_size=two["world_size"], resumed_world_size=1, batch_size=batch)
    report["one_launcher"] = args.one_launcher
    print(f"resume: step {save_at} of the {two['world_size']}-process run on 1 process", file=sys.stderr)
    report.update(_launch(args, command, "resume"))
    report["run_command"] = shown(command).replace(str(target), "RUN")
    losses, report["eval_loss"] = _losses(target)
    report["losses"] = losses[save_at:]
    if len(losses) == steps and len(two["losses"]) == steps:
        report["agreement"] = loss_agreement(two["losses"][save_at:], losses[save_at:], args.tolerance, save_at + 1)
        if len(made["one_gpu"]["losses"]) == steps:
            reference = made["one_gpu"]["losses"][save_at:]
            vs_one = loss_agreement(reference, losses[save_at:], args.tolerance, save_at + 1)
            report["agreement_vs_one_process"] = vs_one
    _write(args, report_name(args.tag, "resume"), report)


# ---------------------------------------------------------------- a killed rank


def kill(args: argparse.Namespace) -> None:
    """Two ranks started by hand with torchrun's variables (no launcher to stop the survivor),
    so what ends rank 0 is the process group's own failure handling within --dist-timeout."""
    run_dir = Path(args.work_dir) / "kill"
    shutil.rmtree(run_dir, ignore_errors=True)
    train = [args.preset, "--task", "text", "--seq-len", str(args.seq_len), "--steps", "100000", "--no-progress"]
    train += ["--batch-size", str(args.batch_size), "--device", args.device, "--dist-timeout", str(args.dist_timeout)]
    train += ["--out", str(run_dir)] + ([] if args.compile else ["--no-compile"])
    port, logs, ranks = free_port(), [], []
    fault = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}[args.fault]
    report = _header(args, "kill")
    report.update(compile=args.compile, preset=args.preset, seq_len=args.seq_len, fault=fault.name)
    report.update(backend="nccl" if args.device == "cuda" else "gloo", dist_timeout_s=args.dist_timeout)
    per_rank = shown([*ZOO, "train", *train]).replace(str(run_dir), "RUN")
    report["command_per_rank"] = f"RANK=r LOCAL_RANK=r WORLD_SIZE=2 {per_rank}"
    report["env"] = {k: v for k, v in os.environ.items() if k.startswith(("TORCH_NCCL", "NCCL_"))}
    survivor: dict[str, Any] = {}
    try:
        for rank in (0, 1):
            rank_env = {**env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
            rank_env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_WORLD_SIZE="2")
            logs.append(open(Path(args.log_dir) / f"kill-rank{rank}.log", "w"))  # noqa: SIM115
            ranks.append(
                subprocess.Popen(
                    [*ZOO, "train", *train],
                    env=rank_env,
                    cwd=ROOT,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        started = time.monotonic()
        deadline = min(started + args.start_timeout, args.deadline - args.dist_timeout - args.grace)
        steps = 0
        while steps < args.kill_after_steps and time.monotonic() < deadline and ranks[0].poll() is None:
            time.sleep(0.2)
            steps = len(_losses(run_dir)[0])
        if steps < args.kill_after_steps:
            waited = time.monotonic() - started
            report["result"] = f"rank 0 logged {steps} steps in {waited:.0f} s (rc {ranks[0].poll()}): no fault sent"
        else:
            os.kill(ranks[1].pid, fault)
            hit = time.monotonic()
            report["killed_after_step"] = steps
            try:
                ranks[0].wait(timeout=args.dist_timeout + args.grace)
                survivor["exit_s"] = round(time.monotonic() - hit, 1)
            except subprocess.TimeoutExpired:
                survivor["exit_s"] = None
                report["result"] = f"rank 0 still running {args.dist_timeout + args.grace:g} s after the fault"
    finally:
        for proc in ranks:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for handle in logs:
            handle.close()
    text = (Path(args.log_dir) / "kill-rank0.log").read_text(errors="replace")
    survivor["rc"] = ranks[0].returncode if ranks else None
    if survivor["rc"] is not None and survivor["rc"] < 0:
        survivor["signal"] = signal.Signals(-survivor["rc"]).name  # e.g. SIGABRT from NCCL's watchdog
    # zoo's one line, or NCCL's watchdog ("Watchdog caught collective operation timeout ...")
    marks = ("error", "timed out", "timing out", "watchdog")
    survivor["error_lines"] = [line for line in text.splitlines() if any(m in line.lower() for m in marks)][:12]
    survivor["traceback"] = "Traceback" in text
    survivor["log_tail"] = text[-2500:]
    report["survivor"] = survivor
    zoo_errors = [line for line in survivor["error_lines"] if line.startswith("zoo train: error:")]
    report["one_line_error"] = len(zoo_errors) == 1 and not survivor["traceback"]
    # the watchdog polls and the process tears down after the timeout fires: allow slack_s for that
    report["slack_s"] = args.slack
    exit_s = survivor.get("exit_s")
    report["within_timeout"] = exit_s is not None and exit_s <= args.dist_timeout + args.slack
    _write(args, report_name(args.tag, "kill", args.fault), report)


# ---------------------------------------------------------------- the command line


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"), help="where the JSONs go")
    common.add_argument("--work-dir", default=None, help="run directories (default: a temporary folder)")
    common.add_argument("--log-dir", default=None, help="the processes' logs (default: WORK_DIR/logs)")
    common.add_argument("--tag", default=None, help="machine part of the file names (default from nvidia-smi: h200x2)")
    common.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a gloo dry run")
    common.add_argument("--seq-len", type=int, default=8192)
    common.add_argument("--no-compile", action="store_true")
    common.add_argument("--run-timeout", type=float, default=300, help="seconds for each training process")
    common.add_argument("--budget-s", type=float, default=540, help="seconds for this whole invocation")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="subcommand", required=True)

    p = sub.add_parser("throughput", parents=[common], help="tokens/s per GPU and peak memory at 1 and N processes")
    p.add_argument("--presets", default="transmamba-400m,transformer-400m", help="comma-separated")
    p.add_argument("--nprocs", default="1,2", help="world sizes, comma-separated (1 is the baseline)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per GPU per step")
    p.add_argument("--ac", default="none", help="activation checkpointing: none, full or K")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (the first compiles)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--backend", action="append", default=[], metavar="SLOT=NAME")
    p.set_defaults(run=throughput)

    for name, run, what in (
        ("curve", curve, "loss curve of N processes vs 1 process with the same global batch"),
        ("resume", resume, "resume the curve's N-process checkpoint on 1 process and continue"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("--preset", default="transmamba-400m")
        p.add_argument("--nproc", type=int, default=2)
        p.add_argument("--batch-size", type=int, default=1, help="sequences per process per step")
        p.add_argument("--steps", type=int, default=50)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--warmup-steps", type=int, default=5)
        p.add_argument("--save-at", type=int, default=0, help="the checkpoint resume starts from (default steps/2)")
        p.add_argument("--split", choices=("batch", "accum"), default="batch", help="1 process: N*b, or b x N accum")
        p.add_argument("--tolerance", type=float, default=0.02, help="max abs per-step loss difference (bf16)")
        p.add_argument(
            "--one-launcher", choices=("torchrun", "plain"), default="torchrun", help="how 1-process runs start"
        )
        p.set_defaults(run=run)

    p = sub.add_parser("kill", parents=[common], help="kill rank 1 of 2 mid-run; time rank 0's exit")
    p.add_argument("--preset", default="transmamba-400m")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="compile (default eager: the fault does not need it)")
    p.add_argument("--dist-timeout", type=float, default=30.0)
    p.add_argument("--fault", choices=("kill", "stop"), default="kill", help="SIGKILL (dies) or SIGSTOP (hangs)")
    p.add_argument("--kill-after-steps", type=int, default=5)
    p.add_argument("--start-timeout", type=float, default=240, help="seconds to reach --kill-after-steps")
    p.add_argument("--grace", type=float, default=60, help="seconds past --dist-timeout before giving up on rank 0")
    p.add_argument("--slack", type=float, default=15, help="seconds past --dist-timeout that still count as within")
    p.set_defaults(run=kill)

    p = sub.add_parser("report", parents=[common], help="print the markdown tables of the reports")
    p.set_defaults(run=lambda args: print(summary_markdown(args.results_dir, args.tag)))
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    args.deadline = time.monotonic() + args.budget_s
    args.device_name, tag = machine(args.device)
    args.tag = args.tag or tag
    args.work_dir = args.work_dir or str(Path(tempfile.gettempdir()) / "zoo-fsdp-scaling")
    args.log_dir = args.log_dir or str(Path(args.work_dir) / "logs")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    args.run(args)


if __name__ == "__main__":
    main()
