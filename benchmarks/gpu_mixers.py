"""Whole-mixer comparison on the GPU: forward and forward+backward at one shape.

transmamba (P = 2048; triton ssm + converter, sdpa attention) vs the transformer mixer
(SDPA, 16 heads) vs the mamba2 mixer on mamba_ssm's kernels (and on ours), bf16,
d_model 1536 (the 400m shape: 48 SSD heads x 64, d_state 128, 8 groups). Each mixer is
built through zoo.build from a one-layer spec; parity of the transmamba mixer with the
pure-PyTorch backends is checked first on a short sequence.

    python benchmarks/gpu_mixers.py --seq-len 8192 --out gpu_mixers.md
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

import zoo
from zoo.registry import SCHEDULE, SSM

if "constant" not in SCHEDULE or "triton" not in SSM:
    # run from a source tree that is not pip-installed: no entry-point metadata, so
    # import the project's plugins directly (they register on import)
    import schedules  # noqa: F401
    import zoo_plugins.mamba_ssm  # noqa: F401
    import zoo_plugins.triton_ssd  # noqa: F401

SSD = {"d_state": 128, "headdim": 64, "n_groups": 8, "expand": 2}


def one_layer(mixer: dict, schedule: dict | None = None) -> dict:
    spec = {"vocab_size": 256, "d_model": 1536, "layers": [{"mixer": mixer, "mlp": {"kind": "none"}}]}
    if schedule:
        spec["schedule"] = schedule
    return spec


def build_mixer(mixer: dict, dtype=torch.bfloat16):
    schedule = {"name": "constant", "params": {"value": 2048}} if mixer["name"] == "transmamba" else None
    model = zoo.build(one_layer(mixer, schedule), device="cuda", dtype=dtype)
    return model.blocks[0].mixer


def compiled(mixer, name: str):
    """``torch.compile`` of a mixer, as the zoo's trainer compiles models. fullgraph except for
    the mamba_ssm peer, whose autograd.Function launches are not ours to make traceable."""
    return torch.compile(mixer, fullgraph="mamba_ssm" not in name, dynamic=False)


def time_mixer(mixer, hidden: torch.Tensor, transpoint: int | None, call=None) -> tuple[float, float]:
    """(fwd ms, fwd+bwd ms); ``call`` (default: the mixer itself) is what runs, e.g. its compiled form."""
    from triton.testing import do_bench

    call = mixer if call is None else call  # (a compiled module has no truth value)
    kwargs = {"transpoint": transpoint} if transpoint is not None else {}
    with torch.no_grad():
        fwd = do_bench(lambda: call(hidden, **kwargs))
    h = hidden.detach().clone().requires_grad_(True)
    grad = torch.randn_like(hidden)

    def step():
        out = call(h, **kwargs)
        out.backward(grad)

    fwd_bwd = do_bench(step, grad_to_none=[h, *mixer.parameters()])
    return fwd, fwd_bwd


def profile_mixer(mixer, hidden: torch.Tensor, transpoint: int | None, rows: int = 24) -> str:
    """Device time per kernel of one forward+backward (after a warm-up), torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    kwargs = {"transpoint": transpoint} if transpoint is not None else {}
    h = hidden.detach().clone().requires_grad_(True)
    grad = torch.randn_like(hidden)
    for _ in range(2):
        mixer(h, **kwargs).backward(grad)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        mixer(h, **kwargs).backward(grad)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=60)


def show_profile(name: str, call, hidden: torch.Tensor, transpoint: int | None) -> None:
    """Print a mixer's profile; a profiler failure is reported and the run goes on."""
    try:
        print(f"== {name}: one fwd+bwd, kernels by device time\n" + profile_mixer(call, hidden, transpoint), flush=True)
    except Exception as exc:
        print(f"== {name}: profile failed: {type(exc).__name__}: {exc}", flush=True)


def parity_check() -> float:
    """transmamba with triton backends vs the same weights on chunked/sdpa, fp32, T=1000, P=300."""
    fast = build_mixer(
        {
            "name": "transmamba",
            "params": SSD,
            "attention": {"name": "sdpa"},
            "ssm": {"name": "triton"},
            "converter": {"name": "triton"},
        },
        torch.float32,
    )
    ref = build_mixer(
        {
            "name": "transmamba",
            "params": SSD,
            "attention": {"name": "eager"},
            "ssm": {"name": "chunked"},
            "converter": {"name": "chunked"},
        },
        torch.float32,
    )
    ref.load_state_dict(fast.state_dict())
    hidden = torch.randn(1, 1000, 1536, device="cuda")
    with torch.no_grad():
        a, b = fast(hidden, transpoint=300), ref(hidden, transpoint=300)
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--transpoint", type=int, default=2048)
    parser.add_argument("--out", default="gpu_mixers.md")
    parser.add_argument("--profile", action="store_true", help="also print each mixer's kernels by device time")
    parser.add_argument(
        "--compile", action="store_true", help="time each mixer eager and under torch.compile (a second row per mixer)"
    )
    parser.add_argument("--tuning", default="", help="Triton SSD launch knobs, e.g. chunk_warps=4,stages=2")
    parser.add_argument("--no-eager", action="store_true", help="with --compile: time the compiled mixers only")
    parser.add_argument(
        "--only", default="", help="comma-separated substrings: time only the mixers whose name contains one of them"
    )
    args = parser.parse_args()
    if args.no_eager and not args.compile:
        parser.error("--no-eager needs --compile (nothing would be timed)")
    from zoo_plugins.triton_ssd.tuning import Tuning

    knobs = Tuning.parse(args.tuning).overrides()  # given to every triton ssm / converter below
    torch.backends.cuda.matmul.allow_tf32 = True
    err = parity_check()
    print(f"parity transmamba(triton) vs transmamba(chunked/eager), fp32: rel err {err:.2e}", flush=True)
    assert err < 1e-2, "parity failed: not timing"
    T = args.seq_len
    mixers = {
        f"transmamba P={args.transpoint} (sdpa + triton)": (
            {
                "name": "transmamba",
                "params": SSD,
                "attention": {"name": "sdpa"},
                "ssm": {"name": "triton"},
                "converter": {"name": "triton"},
            },
            args.transpoint,
        ),
        "transformer (sdpa, 16 heads)": ({"name": "attention", "params": {"n_heads": 16}}, None),
        "mamba2 (mamba_ssm kernels)": ({"name": "mamba2", "params": SSD, "ssm": {"name": "mamba_ssm"}}, None),
        "mamba2 (triton kernels)": ({"name": "mamba2", "params": SSD, "ssm": {"name": "triton"}}, None),
        f"transmamba P={args.transpoint} (sdpa fold_slices + triton)": (
            {
                "name": "transmamba",
                "params": SSD,
                "attention": {"name": "sdpa", "params": {"grouping": "fold_slices"}},
                "ssm": {"name": "triton"},
                "converter": {"name": "triton"},
            },
            args.transpoint,
        ),
        f"transmamba P={args.transpoint} (sdpa + triton, triton conv)": (
            {
                "name": "transmamba",
                "params": SSD,
                "conv": {"name": "triton"},
                "attention": {"name": "sdpa"},
                "ssm": {"name": "triton"},
                "converter": {"name": "triton"},
            },
            args.transpoint,
        ),
        "mamba2 (triton kernels, triton conv)": (
            {"name": "mamba2", "params": SSD, "conv": {"name": "triton"}, "ssm": {"name": "triton"}},
            None,
        ),
        f"transmamba P={args.transpoint} (sdpa + triton, triton conv, triton norm)": (
            {
                "name": "transmamba",
                "params": SSD,
                "conv": {"name": "triton"},
                "norm": {"name": "triton"},
                "attention": {"name": "sdpa"},
                "ssm": {"name": "triton"},
                "converter": {"name": "triton"},
            },
            args.transpoint,
        ),
        "mamba2 (triton kernels, triton conv, triton norm)": (
            {
                "name": "mamba2",
                "params": SSD,
                "conv": {"name": "triton"},
                "norm": {"name": "triton"},
                "ssm": {"name": "triton"},
            },
            None,
        ),
        f"transmamba P={args.transpoint} (flex + triton)": (
            {
                "name": "transmamba",
                "params": SSD,
                "attention": {"name": "flex"},
                "ssm": {"name": "triton"},
                "converter": {"name": "triton"},
            },
            args.transpoint,
        ),
    }
    for spec, _ in mixers.values():
        for slot in ("ssm", "converter"):
            if spec.get(slot, {}).get("name") == "triton":
                spec[slot] = {"name": "triton", "params": {"tuning": knobs}}
    wanted = [part.strip() for part in args.only.split(",") if part.strip()]
    if wanted:
        mixers = {name: entry for name, entry in mixers.items() if any(part in name for part in wanted)}
        if not mixers:
            parser.error(f"--only {args.only!r} matches no mixer")
    else:  # the attention variants are timed only when asked for
        variants = ("flex", "fold_slices", "triton conv", "triton norm")
        mixers = {name: entry for name, entry in mixers.items() if not any(v in name for v in variants)}
    hidden = torch.randn(1, T, 1536, device="cuda", dtype=torch.bfloat16)
    rows = []
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def report() -> str:
        """The table so far, rewritten after every row, so a run cut by its time limit keeps it."""
        lines = [
            f"Mixer comparison, B=1, T={T}, d_model 1536, bf16; {stamp}; {torch.cuda.get_device_name()}; "
            f"torch {torch.__version__}; parity rel err {err:.1e}; Triton SSD tuning {knobs}",
            "",
            "| mixer | fwd ms | fwd+bwd ms | note |",
            "|---|---|---|---|",
        ]
        for name, fwd, fb, note in rows:
            lines.append(f"| {name} | {fwd and f'{fwd:.3f}' or '-'} | {fb and f'{fb:.3f}' or '-'} | {note} |")
        text = "\n".join(lines)
        with open(args.out, "w") as f:
            f.write(text + "\n")
        return text

    def add(row) -> None:
        rows.append(row)
        print(row, flush=True)
        report()

    for name, (spec, transpoint) in mixers.items():
        try:
            mixer = build_mixer(spec)
            if not args.no_eager:
                fwd, fwd_bwd = time_mixer(mixer, hidden, transpoint)
                add((name, fwd, fwd_bwd, "eager"))
        except Exception as exc:  # a peer that cannot run here is reported, not hidden
            add((name, None, None, f"{type(exc).__name__}: {str(exc)[:120]}"))
            continue
        if args.profile and not args.no_eager:
            show_profile(name, mixer, hidden, transpoint)
        if args.compile:
            try:
                call = compiled(mixer, name)
                fwd, fwd_bwd = time_mixer(mixer, hidden, transpoint, call)
                add((f"{name}, compiled", fwd, fwd_bwd, "torch.compile"))
            except Exception as exc:
                add((f"{name}, compiled", None, None, f"{type(exc).__name__}: {str(exc)[:120]}"))
            if args.profile and rows[-1][1] is not None:
                show_profile(f"{name}, compiled", call, hidden, transpoint)
    print(report())
    print(json.dumps({n: [f, b] for n, f, b, _ in rows}))


if __name__ == "__main__":
    main()
