"""Write the two model specs of the CPU schedule-robustness experiment (README.md here).

Both are the same TransMamba model: 8 blocks of d_model 64 (SSD mixer expand 2, headdim 16
-> 8 heads, d_state 16, 2 groups, chunk 32; SwiGLU MLP d_ff 192), tied head, mamba init.
Eight layers so that the eight TransPoints of V9 each appear once. They differ only in the
training schedule: ``v9`` (relative: the paper's T = 8192 list scaled to T) or ``random``
(each layer's P drawn uniformly from V9's eight fractions of T, one of 1024 pre-drawn
per-layer lists per step; it evaluates under V9 by default), ``random-wide`` (the same, from
the fractions 0, 1/4, 1/2, 3/4, 1: half of a layer's tokens in attention on average, against a
quarter for V9's fractions) or ``mixture`` (half the steps V9, half random-wide; evaluates
under V9).
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.models.presets import SIZES, _spec, ssd_mixer

HERE = Path(__file__).parent
D_MODEL, N_LAYERS, D_FF = 64, 8, 192
WIDE = {"name": "random", "params": {"fractions": [0.0, 0.25, 0.5, 0.75, 1.0], "n_variants": 1024, "seed": 0}}
SCHEDULES = {
    "v9": {"name": "v9", "params": {"relative": True}},
    "random": {"name": "random", "params": {"n_variants": 1024, "seed": 0}},
    "random-wide": WIDE,
    "mixture": {"name": "mixture", "params": {"components": [{"name": "v9", "params": {"relative": True}}, WIDE]}},
}


def spec(label: str) -> dict:
    size = dict(SIZES["tiny"], d_model=D_MODEL, n_layers=N_LAYERS, d_ff=D_FF)
    out = _spec("transmamba", "tiny")
    out.update(name=f"transmamba-d64-l8-{label}", d_model=D_MODEL, schedule=SCHEDULES[label])
    out["layers"] = {"n_layers": N_LAYERS, "block": {"mixer": ssd_mixer("transmamba", size), "mlp": {"d_ff": D_FF}}}
    return out


if __name__ == "__main__":
    for label in SCHEDULES:
        (HERE / f"{label}.json").write_text(json.dumps(spec(label), indent=1) + "\n")
