"""Parity section of the SSD GPU benchmark (entry point: ``benchmarks/gpu_ssd.py``): each
backend, and the fused TransMamba call, against the fp64 chunked SSD on the GPU, in bf16.
"""

from __future__ import annotations

import traceback

import torch
from ssd_bench_common import GROUPS, HEAD_DIM, HEADS, STATE_DIM, inputs, log


def parity(backends: dict[str, object], report: list[str]) -> dict[str, bool]:
    """Each backend vs the fp64 chunked SSD on the GPU (itself tested against the sequential
    scan on CPU): y, final_state and the gradients of x, dt, A, B, C, D, initial_state.
    One reference per case serves all backends (the sequential one would take minutes)."""
    from zoo.ops.ssd.chunked import converter_chunked, ssd_chunked
    from zoo.testing import rel_err, tolerance

    tol = tolerance(torch.bfloat16)
    report += ["", "### Parity on the GPU (bf16 backend vs fp64 reference; relative error)", ""]
    report += ["| backend | case | y / state | final_state | worst gradient | result |", "|---|---|---|---|---|---|"]
    ok = {name: True for name in backends}
    for batch, seq_len, with_init in ((1, 1000, True), (2, 333, False)):
        case_id = f"B{batch}-T{seq_len}-H{HEADS}-P{HEAD_DIM}-N{STATE_DIM}-G{GROUPS}" + ("-init" if with_init else "")
        t = inputs(batch, seq_len, grad=False, seed=seq_len)
        t["init"] = torch.randn(batch, HEADS, HEAD_DIM, STATE_DIM, device="cuda") if with_init else None
        ref = {k: None if v is None else v.double().requires_grad_(True) for k, v in t.items()}
        mine = {k: None if v is None else v.clone().requires_grad_(True) for k, v in t.items()}
        y_ref, state_ref = ssd_chunked(
            ref["x"],
            ref["dt"],
            ref["A"],
            ref["B"],
            ref["C"],
            D=ref["D"],
            initial_state=ref["init"],
            return_final_state=True,
            chunk_size=64,
        )
        # A short prefix: after ~1000 tokens the initial state has decayed below fp32 range,
        # and the relative error of its (~1e-70) gradient would be meaningless.
        conv = slice(0, 96)
        conv_ref = converter_chunked(
            ref["B"][:, conv], ref["x"][:, conv], ref["dt"][:, conv], ref["A"], initial_state=ref["init"]
        )
        w_y, w_s = torch.randn_like(y_ref), torch.randn_like(state_ref)
        names = [k for k, v in ref.items() if v is not None]
        g_ref = dict(
            zip(
                names,
                torch.autograd.grad((y_ref * w_y).sum() + (state_ref * w_s).sum(), [ref[k] for k in names]),
                strict=True,
            )
        )
        conv_names = [k for k in ("x", "dt", "A", "B", "init") if ref[k] is not None]
        g_conv_ref = dict(
            zip(conv_names, torch.autograd.grad((conv_ref * w_s).sum(), [ref[k] for k in conv_names]), strict=True)
        )
        for name, backend in backends.items():
            log(f"parity {name} {case_id}")
            try:
                if name.startswith("converter"):
                    state = backend(
                        mine["B"][:, conv],
                        mine["x"][:, conv],
                        mine["dt"][:, conv],
                        mine["A"],
                        initial_state=mine["init"],
                    )
                    errors = {"state": rel_err(state, conv_ref)}
                    grads = torch.autograd.grad((state.double() * w_s).sum(), [mine[k] for k in conv_names])
                    errors.update({f"d{k}": rel_err(g, g_conv_ref[k]) for k, g in zip(conv_names, grads, strict=True)})
                else:
                    y, state = backend(
                        mine["x"],
                        mine["dt"],
                        mine["A"],
                        mine["B"],
                        mine["C"],
                        D=mine["D"],
                        initial_state=mine["init"],
                        return_final_state=True,
                    )
                    errors = {"y": rel_err(y, y_ref), "final_state": rel_err(state, state_ref)}
                    grads = torch.autograd.grad(
                        (y.double() * w_y).sum() + (state.double() * w_s).sum(), [mine[k] for k in names]
                    )
                    errors.update({f"d{k}": rel_err(g, g_ref[k]) for k, g in zip(names, grads, strict=True)})
                failed = {k: v for k, v in errors.items() if not v <= tol}
                verdict = "pass" if not failed else "FAIL " + ", ".join(f"{k} {v:.2e}" for k, v in failed.items())
            except Exception as error:  # a crash is a failed parity, reported
                traceback.print_exc()
                errors, verdict = {}, f"FAIL {type(error).__name__}: {str(error)[:200]}"
            ok[name] = ok[name] and verdict == "pass"
            grad_errors = {k: v for k, v in errors.items() if k.startswith("d")}
            worst = max(grad_errors.items(), key=lambda kv: kv[1]) if grad_errors else ("-", float("nan"))
            first = errors.get("y", errors.get("state", float("nan")))
            row_id = case_id + (" (prefix 96)" if name.startswith("converter") else "")
            report.append(
                f"| {name} | {row_id} | {first:.2e} | {errors.get('final_state', float('nan')):.2e} "
                f"| {worst[0]} {worst[1]:.2e} | {verdict} |"
            )
    return ok


def fused_parity(chunk_size: int, report: list[str], tuning) -> bool:
    """transmamba_ssd(transpoint) == suffix of the full fp64 scan; its gradients too."""
    from zoo.ops.ssd.chunked import ssd_chunked
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import transmamba_ssd

    log(f"parity fused transmamba_ssd chunk {chunk_size}")
    seq_len, transpoint = 1500, 613
    tensors = inputs(1, seq_len, grad=True, seed=3)
    ref = {k: v.detach().double().requires_grad_(True) for k, v in tensors.items()}
    y_ref, state_ref = ssd_chunked(
        ref["x"],
        ref["dt"],
        ref["A"],
        ref["B"],
        ref["C"],
        D=ref["D"],
        return_final_state=True,
        chunk_size=64,
    )
    y_ref = y_ref[:, transpoint:]
    y, state = transmamba_ssd(
        tensors["x"],
        tensors["dt"],
        tensors["A"],
        tensors["B"],
        tensors["C"],
        transpoint=transpoint,
        D=tensors["D"],
        return_final_state=True,
        chunk_size=chunk_size,
        tuning=tuning,
    )
    w_y, w_s = torch.randn_like(y_ref), torch.randn_like(state_ref)
    g_ref = torch.autograd.grad((y_ref * w_y).sum() + (state_ref * w_s).sum(), list(ref.values()))
    g = torch.autograd.grad((y.double() * w_y).sum() + (state.double() * w_s).sum(), list(tensors.values()))
    errors = {"y": rel_err(y, y_ref), "final_state": rel_err(state, state_ref)}
    errors.update({f"d{k}": rel_err(a, b) for k, a, b in zip(tensors, g, g_ref, strict=True)})
    ok = all(e <= 3e-2 for e in errors.values())
    worst = max(errors.items(), key=lambda kv: kv[1])
    report.append(
        f"| transmamba_ssd (chunk {chunk_size}, transpoint {transpoint}) | B1-T{seq_len} | {errors['y']:.2e} "
        f"| {errors['final_state']:.2e} | {worst[0]} {worst[1]:.2e} | {'pass' if ok else 'FAIL'} |"
    )
    return ok
