"""Chunked SSD (Mamba2 "state space duality") in pure PyTorch.

Shape legend: B batch, T tokens (L for a converter prefix), H heads, P head dim, G groups,
N state dim, R = H // G heads per group; inside: c chunks of ``chunk_size`` tokens (l, s).

The sequence is cut into chunks. Within a chunk the output is a masked quadratic form
(attention-like, with decay mask exp(segsum(dt*A))); across chunks only the [H, P, N]
state travels. Four steps, as in the Mamba2 paper:

1. intra-chunk outputs   y_diag[l] = sum_{s<=l} (C_l . B_s) exp(a_{s+1} + ... + a_l) dt_s x_s
2. chunk states          state_c = sum_s exp(a_{s+1} + ... + a_end) dt_s x_s B_s^T
3. state passing         state entering chunk c, from the initial state and the states 2.
4. state -> output       y_off[l] = C_l . state_in * exp(a_0 + ... + a_l)

with a = dt * A <= 0. All decays are sums of a over a range, formed by cumulative sums
of non-positive terms and never by exp of a positive number, so nothing overflows.
Padding T up to a chunk multiple uses dt = 0 (decay 1, input 0): exactly neutral.
Step 3 is a [c+1, c+1] decay matrix (quadratic in the chunk count, parallel, no
Python loop over data) so the whole function traces with ``fullgraph=True, dynamic=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.ops.ssd.reference import compute_dtype


def segsum(log_decay: torch.Tensor) -> torch.Tensor:
    """[..., L] -> [..., L, L]: out[i, j] = a_{j+1} + ... + a_i for i >= j, -inf above.

    Built by a masked cumulative sum, not as cumsum[i] - cumsum[j], which would lose
    precision to cancellation on long chunks.
    """
    length = log_decay.shape[-1]
    index = torch.arange(length, device=log_decay.device)
    expanded = log_decay.unsqueeze(-1).expand(*log_decay.shape, length)  # [..., i, j] = a_i
    summed = expanded.masked_fill(index[:, None] <= index[None, :], 0.0).cumsum(dim=-2)
    return summed.masked_fill(index[:, None] < index[None, :], float("-inf"))


def suffix_sum_exclusive(log_decay: torch.Tensor) -> torch.Tensor:
    """[..., L] -> [..., L]: out[s] = a_{s+1} + ... + a_{L-1} (0 for the last)."""
    inclusive = log_decay.flip(-1).cumsum(dim=-1).flip(-1)
    return F.pad(inclusive[..., 1:], (0, 1))


def _to_chunks(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    chunk_size: int,
    work: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad T to a chunk multiple (dt = 0) and split heads into (groups, heads per group).

    -> xdt [b,c,g,r,l,p], log_decay [b,c,g,r,l], B [b,c,g,l,n].
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_heads, n_groups = x.shape[2], B.shape[2]
    if n_heads % n_groups:
        raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_groups ({n_groups})")
    pad = (-x.shape[1]) % chunk_size
    x = F.pad(x.to(work), (0, 0, 0, 0, 0, pad))
    dt = F.pad(dt.to(work), (0, 0, 0, pad))
    B = F.pad(B.to(work), (0, 0, 0, 0, 0, pad))
    xdt = rearrange(x * dt[..., None], "b (c l) (g r) p -> b c g r l p", l=chunk_size, g=n_groups)
    log_decay = rearrange(dt * A.to(work), "b (c l) (g r) -> b c g r l", l=chunk_size, g=n_groups)
    return xdt, log_decay, rearrange(B, "b (c l) g n -> b c g l n", l=chunk_size)


def _chunk_states(xdt: torch.Tensor, log_decay: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Step 2: the state each chunk leaves behind from its own inputs. -> [b,c,g,r,p,n]."""
    decay_to_end = torch.exp(suffix_sum_exclusive(log_decay))
    weighted = (xdt * decay_to_end[..., None]).transpose(-1, -2)  # [b,c,g,r,p,l]
    return weighted @ B.unsqueeze(3)


def _with_initial(chunk_states: torch.Tensor, initial_state: torch.Tensor | None, n_groups: int) -> torch.Tensor:
    """Prepend the initial state: -> [b, c+1, g, r, p, n] (index 0 enters chunk 0)."""
    if initial_state is None:
        first = torch.zeros_like(chunk_states[:, :1])
    else:
        first = rearrange(
            initial_state.to(chunk_states.dtype),
            "b (g r) p n -> b 1 g r p n",
            g=n_groups,
        )
    return torch.cat([first, chunk_states], dim=1)


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int = 64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan; same contract as :func:`zoo.ops.ssd.reference.ssd_scan`.

    x [B,T,H,P], dt [B,T,H], A [H], B/C [B,T,G,N], D [H], initial_state [B,H,P,N]
    -> y [B,T,H,P] in x.dtype (and final_state [B,H,P,N] in fp32, fp64 for fp64 inputs).
    """
    seq_len, n_groups = x.shape[1], B.shape[2]
    work = compute_dtype(x.dtype)
    xdt, log_decay, B_c = _to_chunks(x, dt, A, B, chunk_size, work)
    pad = (-seq_len) % chunk_size
    C_c = rearrange(
        F.pad(C.to(work), (0, 0, 0, 0, 0, pad)),
        "b (c l) g n -> b c g l n",
        l=chunk_size,
    )

    # 1. intra-chunk: one C.B score matrix per group serves its R heads.
    scores = (C_c @ B_c.transpose(-1, -2)).unsqueeze(3)  # [b,c,g,1,l,s]
    y = (scores * torch.exp(segsum(log_decay))) @ xdt  # [b,c,g,r,l,p]

    # 2. + 3. chunk states, then pass them along: entering[z] = sum_{c<=z} decay(z,c) states[c].
    states = _with_initial(_chunk_states(xdt, log_decay, B_c), initial_state, n_groups)
    chunk_decay = torch.exp(segsum(F.pad(rearrange(log_decay.sum(-1), "b c g r -> b g r c"), (1, 0))))
    passed = torch.einsum("bgrzc,bcgrpn->bzgrpn", chunk_decay, states)

    # 4. the state entering each chunk, read out by C and decayed to each position.
    y_off = C_c.unsqueeze(3) @ passed[:, :-1].transpose(-1, -2)  # [b,c,g,r,l,p]
    y = y + y_off * torch.exp(log_decay.cumsum(dim=-1))[..., None]

    y = rearrange(y, "b c g r l p -> b (c l) (g r) p")[:, :seq_len]
    if D is not None:
        y = y + D.to(work)[:, None] * x.to(work)
    y = y.to(x.dtype)
    if not return_final_state:
        return y
    return y, rearrange(passed[:, -1], "b g r p n -> b (g r) p n")


def converter_chunked(
    k: torch.Tensor,
    v: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Memory Converter by the chunk-state pass alone (no outputs are computed).

    k [B,L,G,N] (= B), v [B,L,H,P] (= x), dt [B,L,H], A [H], initial_state [B,H,P,N]
    -> state [B,H,P,N] after the prefix, fp32 (fp64 for fp64 inputs).
    """
    n_groups = k.shape[2]
    work = compute_dtype(v.dtype)
    xdt, log_decay, k_c = _to_chunks(v, dt, A, k, chunk_size, work)
    states = _with_initial(_chunk_states(xdt, log_decay, k_c), initial_state, n_groups)
    # Only the last row of the state-passing matrix is needed: decay of each state to the end.
    totals = F.pad(rearrange(log_decay.sum(-1), "b c g r -> b g r c"), (1, 0))
    decay_to_end = torch.exp(suffix_sum_exclusive(totals))  # [b,g,r,c+1]
    final = torch.einsum("bgrc,bcgrpn->bgrpn", decay_to_end, states)
    return rearrange(final, "b g r p n -> b (g r) p n")
