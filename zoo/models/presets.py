"""Registered presets: ``{transmamba,transformer,mamba2,hybrid}-{tiny,small,400m,1.5b}``.

Each preset is a function returning a spec dict (validated by the builder). The SSD
mixers' ``ssm``, ``converter``, ``conv`` and ``norm`` slots are ``auto``: the Triton plugin's
kernels on CUDA (for the norm: once its Triton backend is registered as preferred there),
the PyTorch reference elsewhere (``zoo.builder.choose_backend``); chunk size 64, the Triton
SSD's tuned size.

Sizes. ``tiny`` (~1.6M params) is for CPU tests, ``small`` (~22M) for CPU training in
minutes. ``400m`` follows the paper's 400M shape (hidden 1536, FFN 4096, 16 attention heads,
"24 layers" counted as 12 mixer + 12 MLP layers, mixer:MLP 1:1); the SSD shape is
48 heads x headdim 64, d_state 128, 8 groups. The paper's Table 8 is not reachable here
for the 1.5B shape, so ``1.5b`` is our reading: 64 layers = 32 blocks, hidden 1792,
FFN 4864, same SSD head shape.

Parameter matching. At each size the four architectures have the same parameter count
within 2% (``docs/training.md`` has the table; ``tests/test_presets.py`` checks it on the
meta device). The match is per block: a Mamba2 / TransMamba mixer (expand 2: in_proj
D x (4D + 2GN + H), out_proj 2D x D, conv, dt, A, D, gated norm) carries about
2D^2 + D(2GN + H) more weights than an attention mixer (4D^2), so an attention block gets
a wider SwiGLU: ``attn_d_ff`` is the multiple of 64 (tiny, small) or 128 (400m, 1.5b)
nearest to ``d_ff + (SSD mixer - attention mixer) / 3D``. The SSD blocks keep the paper's
shape (FFN 4096 at 400m), so ``transmamba-400m`` is the paper's model and the transformer
baseline is widened to its size, not the other way round; the hybrid's attention layers
use the same wide block, so any mix of layers matches too. The transformer's LM head is
untied (as Llama's), which adds vocab x d_model weights; its blocks' SwiGLU
(``transformer_d_ff``, on the same grid, 32 at tiny where 64 is too coarse for 2%) is
narrowed by that many weights spread over the blocks, so the total count (head included)
still matches. Same depth and width everywhere, so a comparison
differs in the mixer (and the head the architecture's community uses) and nothing else.

Init. Each architecture starts from the recipe its community uses (``init`` in the spec,
``docs/training.md`` has the sources): the transformer from Llama's (every Linear and the
embedding N(0, 0.02), untied head), Mamba2, TransMamba and the hybrid from mamba_ssm's
(PyTorch's default Linear init, embedding N(0, 0.02), residual outputs divided by
sqrt(2 * n_layers), tied head; dt, A and D as mamba_ssm's Mamba2).
"""

from __future__ import annotations

from typing import Any

from zoo.registry import PRESET

# d_ff: the SwiGLU width next to a Mamba2/TransMamba mixer; attn_d_ff: next to an attention
# mixer in a tied model (the hybrid; exact match at 501.0, 1374.5, 5824.9, 6765.9);
# transformer_d_ff: the transformer's, which also pays for its untied LM head (exact match at
# 486.6, 1365.8, 4936.0, 6432.6). See "Parameter matching" above.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=260,
        d_model=128,
        n_layers=6,
        d_ff=384,
        attn_d_ff=512,
        transformer_d_ff=480,
        headdim=16,
        d_state=16,
        n_groups=2,
        attn_heads=4,
        chunk_size=32,
    ),
    "small": dict(
        vocab_size=260,
        d_model=384,
        n_layers=10,
        d_ff=1024,
        attn_d_ff=1344,
        transformer_d_ff=1344,
        headdim=64,
        d_state=64,
        n_groups=2,
        attn_heads=6,
        chunk_size=64,
    ),
    "400m": dict(
        vocab_size=32000,
        d_model=1536,
        n_layers=12,
        d_ff=4096,
        attn_d_ff=5888,
        transformer_d_ff=4992,
        headdim=64,
        d_state=128,
        n_groups=8,
        attn_heads=16,
        chunk_size=64,
    ),
    "1.5b": dict(
        vocab_size=32000,
        d_model=1792,
        n_layers=32,
        d_ff=4864,
        attn_d_ff=6784,
        transformer_d_ff=6400,
        headdim=64,
        d_state=128,
        n_groups=8,
        attn_heads=16,
        chunk_size=64,
    ),
}

ARCHS = ("transmamba", "transformer", "mamba2", "hybrid")


def ssd_mixer(name: str, size: dict[str, Any]) -> dict[str, Any]:
    mixer: dict[str, Any] = {
        "name": name,
        "params": {"d_state": size["d_state"], "headdim": size["headdim"], "n_groups": size["n_groups"], "expand": 2},
        # auto: the Triton SSD and conv on CUDA (where the plugin is installed), else PyTorch;
        # the norm's auto is the PyTorch one everywhere until a Triton norm is preferred on CUDA
        "ssm": {"name": "auto", "params": {"chunk_size": size["chunk_size"]}},
        "conv": {"name": "auto"},
        "norm": {"name": "auto"},
    }
    if name == "transmamba":
        mixer["attention"] = {"name": "sdpa"}
        mixer["converter"] = {"name": "auto", "params": {"chunk_size": size["chunk_size"]}}
    return mixer


def attention_mixer(size: dict[str, Any]) -> dict[str, Any]:
    return {"name": "attention", "params": {"n_heads": size["attn_heads"]}, "attention": {"name": "sdpa"}}


def _spec(arch: str, size_name: str) -> dict[str, Any]:
    size = SIZES[size_name]
    ssd_mlp = {"d_ff": size["d_ff"]}
    attention_block = {"mixer": attention_mixer(size), "mlp": {"d_ff": size["attn_d_ff"]}}
    spec: dict[str, Any] = {
        "name": f"{arch}-{size_name}",
        "vocab_size": size["vocab_size"],
        "d_model": size["d_model"],
    }
    n = size["n_layers"]
    if arch != "transformer":
        spec["init"] = "mamba"  # mamba_ssm's recipe, tied head as MambaLMHeadModel's default
    if arch == "transmamba":
        spec["layers"] = [{"mixer": ssd_mixer("transmamba", size), "mlp": ssd_mlp}] * n
        spec["schedule"] = {"name": "v9", "params": {"relative": True}}
    elif arch == "mamba2":
        spec["layers"] = [{"mixer": ssd_mixer("mamba2", size), "mlp": ssd_mlp}] * n
    elif arch == "transformer":
        spec["layers"] = [{**attention_block, "mlp": {"d_ff": size["transformer_d_ff"]}}] * n
        spec["tie_embeddings"] = False  # as Llama
        spec["init"] = "llama"
    elif arch == "hybrid":
        # Jamba-like 1 attention : 7 Mamba2, attention in the middle of each group of 8
        spec["layers"] = {
            "n_layers": n,
            "block": {"mixer": ssd_mixer("mamba2", size), "mlp": ssd_mlp},
            "every": 8,
            "offset": 4,
            "other": attention_block,
        }
    return spec


def _register(arch: str, size_name: str) -> None:
    def preset() -> dict[str, Any]:
        return _spec(arch, size_name)

    preset.__name__ = f"{arch}_{size_name}".replace(".", "_").replace("-", "_")
    preset.__qualname__ = preset.__name__
    preset.__doc__ = f"{arch} at size {size_name}"
    PRESET.register(f"{arch}-{size_name}")(preset)


for _arch in ARCHS:
    for _size in SIZES:
        _register(_arch, _size)
