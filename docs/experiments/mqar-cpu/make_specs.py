"""Write the model specs of the CPU MQAR experiment (docs/experiments.md) next to this file.

Every model has 2 blocks of d_model 64 with a SwiGLU MLP; transmamba, mamba2 and the hybrid
share the SSD mixer shape (expand 2, headdim 16 -> 8 heads, d_state 16, 1 group), and the
transformer's MLP is widened until its parameter count matches the SSD models (within 1%).
"""

from __future__ import annotations

import json
from pathlib import Path

import zoo
from zoo.training.trainer import count_params

HERE = Path(__file__).parent
D_MODEL, N_LAYERS, VOCAB, D_FF, CHUNK = 64, 2, 64, 192, 16
SSD = {"d_state": 16, "headdim": 16, "n_groups": 1, "expand": 2}


def ssd_block(name: str) -> dict:
    mixer = {"name": name, "params": dict(SSD), "ssm": {"name": "chunked", "params": {"chunk_size": CHUNK}}}
    if name == "transmamba":
        mixer["attention"] = {"name": "sdpa"}
        mixer["converter"] = {"name": "chunked", "params": {"chunk_size": CHUNK}}
    return {"mixer": mixer, "mlp": {"d_ff": D_FF}}


def attention_block(d_ff: int) -> dict:
    return {
        "mixer": {"name": "attention", "params": {"n_heads": 4}, "attention": {"name": "sdpa"}},
        "mlp": {"d_ff": d_ff},
    }


def spec(name: str, layers: list[dict], schedule: dict | None = None) -> dict:
    out = {"name": name, "vocab_size": VOCAB, "d_model": D_MODEL, "layers": layers}
    if schedule is not None:
        out["schedule"] = schedule
    return out


def main() -> None:
    transmamba = [ssd_block("transmamba")] * N_LAYERS
    specs = {
        "tm-attn": spec("tm-attn", transmamba, {"name": "attention_only"}),
        "tm-ssm": spec("tm-ssm", transmamba, {"name": "ssm_only"}),
        "tm-half": spec("tm-half", transmamba, {"name": "constant", "params": {"fraction": 0.5}}),
        "tm-cyclic": spec("tm-cyclic", transmamba, {"name": "cyclic", "params": {"fractions": [0.25, 0.75]}}),
        "tm-random": spec(
            "tm-random",
            transmamba,
            {
                "name": "random",
                "params": {"fractions": [0.0, 0.25, 0.5, 0.75, 1.0], "n_variants": 8, "eval_fractions": [0.25, 0.75]},
            },
        ),
        "mamba2": spec("mamba2", [ssd_block("mamba2")] * N_LAYERS),
        "hybrid": spec("hybrid", [ssd_block("mamba2"), attention_block(D_FF)]),
    }
    target = count_params(zoo.build(specs["mamba2"]))
    d_ff = min(
        range(D_FF, 8 * D_FF, 8),
        key=lambda f: abs(count_params(zoo.build(spec("t", [attention_block(f)] * N_LAYERS))) - target),
    )
    specs["transformer"] = spec("transformer", [attention_block(d_ff)] * N_LAYERS)
    hybrid_ff = min(
        range(D_FF, 8 * D_FF, 8),
        key=lambda f: abs(count_params(zoo.build(spec("h", [ssd_block("mamba2"), attention_block(f)]))) - target),
    )
    specs["hybrid"] = spec("hybrid", [ssd_block("mamba2"), attention_block(hybrid_ff)])
    for name, body in specs.items():
        params = count_params(zoo.build(body))
        (HERE / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")
        print(f"{name:12s} {params:,} params")


if __name__ == "__main__":
    main()
