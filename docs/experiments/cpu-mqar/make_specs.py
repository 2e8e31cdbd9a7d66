"""Write the four parameter-matched micro models of the CPU comparisons next to ``--out``.

The tiny presets (6 blocks of d_model 128, ~1.6M params) train at a few hundred tokens per
second on one CPU thread, too slow for a seeded LR sweep on a shared 2-core machine, so
these specs keep the presets' recipe at a smaller shape: 2 blocks of d_model 64, SwiGLU
MLPs, SSD mixers of expand 2, headdim 16 (8 heads), d_state 16, 1 group, chunk size 32,
4 attention heads. As in ``zoo.models.presets``: the transformer has Llama's init and an
untied head, the SSD models mamba_ssm's init and a tied head; the hybrid is one Mamba2
block then one attention block. TransMamba's TransPoint is T/2 in both layers (attention on
the first half of the sequence, SSM on the rest): the presets' v9 schedule at 2 layers
would be P = 0 and P = T/64, a Mamba2 in all but name. Each attention block's SwiGLU is widened (the hybrid's) or
set (the transformer's, which also pays for its untied head) to the width whose total
parameter count is nearest the Mamba2 model's, at the task's vocabulary (the head's size
depends on it). The script prints the counts and fails if any is more than 2% off. Two
ablations come with them: TransMamba with every layer in attention (``attention_only``, P = T)
and in SSM mode (``ssm_only``, P = 0), the same weights on one path, and the attention-only
one with a conv of width 1 (``d_conv: 1``: a per-channel scale, no look at earlier tokens);
and the transformer with TransMamba's conv (width 4 and SiLU on q, k, v; ``d_conv: 4``),
its SwiGLU set to the width nearest the count, like the plain transformer's.

    python docs/experiments/cpu-mqar/make_specs.py --vocab 32 --out docs/experiments/cpu-mqar
    python docs/experiments/cpu-mqar/make_specs.py --vocab 259 --out docs/experiments/cpu-text
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import zoo
from zoo.training.trainer import count_params

D_MODEL, N_LAYERS, D_FF, CHUNK, HEADS = 64, 2, 192, 32, 4
SSD = {"d_state": 16, "headdim": 16, "n_groups": 1, "expand": 2}
MATCH = 0.02


def ssd_block(name: str, d_conv: int | None = None) -> dict[str, Any]:
    mixer: dict[str, Any] = {
        "name": name,
        "params": dict(SSD) if d_conv is None else {**SSD, "d_conv": d_conv},
        "ssm": {"name": "auto", "params": {"chunk_size": CHUNK}},
        "conv": {"name": "auto"},
    }
    if name == "transmamba":
        mixer["attention"] = {"name": "sdpa"}
        mixer["converter"] = {"name": "auto", "params": {"chunk_size": CHUNK}}
    return {"mixer": mixer, "mlp": {"d_ff": D_FF}}


def attention_block(d_ff: int, d_conv: int = 0) -> dict[str, Any]:
    params = {"n_heads": HEADS, "d_conv": d_conv} if d_conv else {"n_heads": HEADS}
    mixer = {"name": "attention", "params": params, "attention": {"name": "sdpa"}}
    return {"mixer": mixer, "mlp": {"d_ff": d_ff}}


def specs(vocab: int, transformer_ff: int, hybrid_ff: int, conv_ff: int | None = None) -> dict[str, dict[str, Any]]:
    base = {"vocab_size": vocab, "d_model": D_MODEL}

    def transmamba(name: str, schedule: dict[str, Any], d_conv: int | None = None) -> dict[str, Any]:
        layers = [ssd_block("transmamba", d_conv)] * N_LAYERS
        return {"name": name, **base, "init": "mamba", "layers": layers, "schedule": schedule}

    def transformer(name: str, d_conv: int = 0, d_ff: int | None = None) -> dict[str, Any]:
        layers = [attention_block(d_ff or transformer_ff, d_conv)] * N_LAYERS
        return {"name": name, **base, "init": "llama", "tie_embeddings": False, "layers": layers}

    return {
        "transformer": transformer("transformer"),
        "mamba2": {"name": "mamba2", **base, "init": "mamba", "layers": [ssd_block("mamba2")] * N_LAYERS},
        "hybrid": {
            "name": "hybrid",
            **base,
            "init": "mamba",
            "layers": [ssd_block("mamba2"), attention_block(hybrid_ff)],
        },
        "transmamba": transmamba("transmamba", {"name": "constant", "params": {"fraction": 0.5}}),
        # the ablations: the same TransMamba run on one path only (P = T or P = 0 in both layers)
        "transmamba-attention": transmamba("transmamba-attention-only", {"name": "attention_only"}),
        "transmamba-attention-noconv": transmamba("transmamba-attention-only-conv1", {"name": "attention_only"}, 1),
        "transmamba-ssm": transmamba("transmamba-ssm-only", {"name": "ssm_only"}),
        # the Transformer with TransMamba's short conv (width 4 + SiLU) on its q, k, v
        "transformer-conv": transformer("transformer-conv4", 4, conv_ff),
    }


def nearest_ff(vocab: int, which: str, target: int) -> int:
    def count(ff: int) -> int:
        return count_params(zoo.build(specs(vocab, ff, ff, ff)[which]))

    return min(range(8, 8 * D_FF, 8), key=lambda ff: abs(count(ff) - target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, required=True, help="the task's vocabulary (MQAR: --vocab; bytes: 259)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    target = count_params(zoo.build(specs(args.vocab, D_FF, D_FF)["mamba2"]))
    chosen = specs(
        args.vocab,
        nearest_ff(args.vocab, "transformer", target),
        nearest_ff(args.vocab, "hybrid", target),
        nearest_ff(args.vocab, "transformer-conv", target),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in chosen.items():
        params = count_params(zoo.build(body))
        off = params / target - 1
        print(f"{name:12s} {params:,} params ({100 * off:+.2f}% vs mamba2)")
        if abs(off) > MATCH:
            raise SystemExit(f"{name} is {100 * off:+.2f}% off the mamba2 count (> {100 * MATCH:.0f}%)")
        (args.out / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
