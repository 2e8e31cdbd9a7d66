"""Write the model specs of the CPU schedule-robustness experiment (README.md here).

``<recipe>.json``: one TransMamba model, 8 blocks of d_model 64 (SSD mixer expand 2,
headdim 16 -> 8 heads, d_state 16, 2 groups, chunk 32; SwiGLU MLP d_ff 192), tied head,
mamba init. Eight layers so that the eight TransPoints of V9 each appear once. The recipes
differ only in the training schedule: ``v9`` (relative: the paper's T = 8192 list scaled to
T); ``random`` (each layer's P drawn uniformly from V9's eight fractions of T, one of 1024
pre-drawn per-layer lists per step; it evaluates under V9 by default); ``random-wide`` (the
same, from the fractions 0, 1/4, 1/2, 3/4, 1: half of a layer's tokens in attention on
average, against a quarter for V9's fractions); ``mixture`` (half the steps V9, half
random-wide; evaluates under V9); ``attention`` and ``ssm`` (one path alone, P = T or P = 0
in every layer: how good each path of these shared weights gets with every training token).

``g8-{v9,attention,ssm}.json``: the same with 8 q/k groups (one per head) and d_ff 128 (parameters
within 2%). ``transformer.json``: a Transformer of the same depth and width (4 heads,
Llama's init and untied head, d_ff 250; parameters within 2%).

``gd-{v9,mixture,mixture3,mixture3a,mixture7,random,attention,ssm}.json``: the same model with the SSM
path's output treatment on the attention path too (``attn_gate: true``, ``attn_d_skip: true``:
the z gate in the shared gated RMSNorm and the D skip; no new parameters). ``mixture3`` and
``mixture7`` weight V9 3 and 7 to random-wide's 1 (V9 on 3 steps in 4, or 7 in 8);
``mixture3a`` keeps V9 on 3 steps in 4 and splits the rest between random-wide and
all-attention (1 step in 8 each). ``gd-phased100`` and ``gd-phased120`` train under the half-V9
mixture for the first 100 (or 120) of the CPU run's 150 steps and under V9 alone after (the
``phases`` schedule); they are written at the default width only.

``--d-model W --out DIR`` writes the recipes' specs alone (plain and ``gd-``) at width W (SwiGLU 3W, the SSD
mixer's other settings unchanged, so 2W/16 heads), for the same experiment in a larger
model (``T9_D_MODEL=W bash benchmarks/gpu_session.sh table9``).

    python docs/experiments/table9-cpu/make_specs.py                      # the files here
    python docs/experiments/table9-cpu/make_specs.py --d-model 256 --out runs/t9-d256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.errors import SpecError
from zoo.models.presets import SIZES, _spec, attention_mixer, ssd_mixer
from zoo.specs import load_spec

HERE = Path(__file__).parent
D_MODEL, N_LAYERS, D_FF = 64, 8, 192
V9 = {"name": "v9", "params": {"relative": True}}
WIDE = {"name": "random", "params": {"fractions": [0.0, 0.25, 0.5, 0.75, 1.0], "n_variants": 1024, "seed": 0}}
SCHEDULES = {
    "v9": V9,
    "random": {"name": "random", "params": {"n_variants": 1024, "seed": 0}},
    "random-wide": WIDE,
    "mixture": {"name": "mixture", "params": {"components": [V9, WIDE]}},
    "attention": {"name": "attention_only"},
    "ssm": {"name": "ssm_only"},
}
PLAIN_RECIPES = tuple(SCHEDULES)
# mixtures with more V9 steps: V9 on 3 (or 7) steps in 4 (or 8), random-wide on the rest
SCHEDULES |= {
    f"mixture{w}": {"name": "mixture", "params": {"components": [{**V9, "weight": float(w)}, {**WIDE, "weight": 1.0}]}}
    for w in (3, 7)
}
# V9 on 3 steps in 4 with the all-attention corner trained on purpose: all-attention on 1 step
# in 8, random-wide on the other 1 in 8 (the worst schedule of mixture3 at d_model 256 is all-attention)
SCHEDULES["mixture3a"] = {
    "name": "mixture",
    "params": {
        "components": [
            {**V9, "weight": 6.0},
            {**WIDE, "weight": 1.0},
            {"name": "attention_only", "weight": 1.0},
        ]
    },
}

# A curriculum of schedules (the phases schedule): the half-V9 mixture on the first N of the
# CPU run's 150 steps, V9 alone after; at the default width only (N counts that run's steps)
PHASED = {
    f"phased{n}": {"name": "phases", "params": {"phases": [{**SCHEDULES["mixture"], "steps": n}, V9]}}
    for n in (100, 120)
}
SCHEDULES |= PHASED


# The same model with 8 q/k groups instead of 2 (one per head, as a Transformer's heads), its
# SwiGLU narrowed to keep the parameter count within 2%: files g8-<recipe>.json.
G8_GROUPS, G8_D_FF = 8, 128
G8_RECIPES = ("v9", "attention", "ssm")
# The attention path given the SSM path's z gate and D skip: files gd-<recipe>.json.
GATED = {"attn_gate": True, "attn_d_skip": True}
GD_RECIPES = ("v9", "mixture", "mixture3", "mixture3a", "mixture7", "random", "attention", "ssm")
# A Transformer of the same depth and width, Llama's recipe (untied head), matched within 2%.
TRANSFORMER_HEADS, TRANSFORMER_D_FF = 4, 250


def spec(
    label: str,
    *,
    n_groups: int = 2,
    d_ff: int = D_FF,
    prefix: str = "",
    d_model: int = D_MODEL,
    mixer_params: dict | None = None,
) -> dict:
    size = dict(SIZES["tiny"], d_model=d_model, n_layers=N_LAYERS, d_ff=d_ff, n_groups=n_groups)
    out = _spec("transmamba", "tiny")
    out.update(name=f"transmamba-d{d_model}-l8-{prefix}{label}", d_model=d_model, schedule=SCHEDULES[label])
    mixer = ssd_mixer("transmamba", size)
    mixer["params"] = {**mixer["params"], **(mixer_params or {})}
    out["layers"] = {"n_layers": N_LAYERS, "block": {"mixer": mixer, "mlp": {"d_ff": d_ff}}}
    return out


def transformer_spec() -> dict:
    size = dict(SIZES["tiny"], d_model=D_MODEL, attn_heads=TRANSFORMER_HEADS)
    out = _spec("transformer", "tiny")
    out.update(name="transformer-d64-l8", d_model=D_MODEL)
    block = {"mixer": attention_mixer(size), "mlp": {"d_ff": TRANSFORMER_D_FF}}
    out["layers"] = {"n_layers": N_LAYERS, "block": block}
    return out


def bodies(d_model: int) -> dict[str, dict]:
    """Every spec file at width ``d_model`` by file stem: the recipes plain and ``gd-``; at the
    default width also the ``g8-`` ones and the Transformer."""
    width = {} if d_model == D_MODEL else {"d_ff": 3 * d_model, "d_model": d_model}
    out = {label: spec(label, **width) for label in PLAIN_RECIPES}
    out |= {f"gd-{label}": spec(label, prefix="gd-", mixer_params=GATED, **width) for label in GD_RECIPES}
    if d_model == D_MODEL:
        out |= {f"g8-{label}": spec(label, n_groups=G8_GROUPS, d_ff=G8_D_FF, prefix="g8-") for label in G8_RECIPES}
        out["transformer"] = transformer_spec()
        out |= {f"gd-{label}": spec(label, prefix="gd-", mixer_params=GATED) for label in PHASED}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=D_MODEL, help="width (default 64: the files here)")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: this folder)")
    args = parser.parse_args()
    written = bodies(args.d_model)
    try:  # every spec valid before any is written (2 W / 16 heads in 2 groups: W a multiple of 16)
        for body in written.values():
            load_spec(body)
    except SpecError as exc:
        parser.error(f"--d-model {args.d_model} gives an invalid model: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in written.items():
        (args.out / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
