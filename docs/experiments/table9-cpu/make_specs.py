"""Write the two model specs of the CPU schedule-robustness experiment (README.md here).

Both are the same TransMamba model: 8 blocks of d_model 64 (SSD mixer expand 2, headdim 16
-> 8 heads, d_state 16, 2 groups, chunk 32; SwiGLU MLP d_ff 192), tied head, mamba init.
Eight layers so that the eight TransPoints of V9 each appear once. They differ only in the
training schedule: ``v9`` (relative: the paper's T = 8192 list scaled to T) or ``random``
(each layer's P drawn uniformly from V9's eight fractions of T, one of 1024 pre-drawn
per-layer lists per step; it evaluates under V9 by default).
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.models.presets import SIZES, _spec, ssd_mixer

HERE = Path(__file__).parent
D_MODEL, N_LAYERS, D_FF = 64, 8, 192
SCHEDULES = {
    "v9": {"name": "v9", "params": {"relative": True}},
    "random": {"name": "random", "params": {"n_variants": 1024, "seed": 0}},
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
