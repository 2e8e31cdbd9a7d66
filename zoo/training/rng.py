"""The process's random-number state as JSON (base64 bytes), for checkpoints."""

from __future__ import annotations

import base64
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [decode(s) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():  # a job on another number of GPUs keeps its own
            torch.cuda.set_rng_state_all(cuda)
