"""The paper's schedules (TransMamba, arXiv 2503.24067, section 2.4 / Table 6; T = 8192).

Each is a cyclic per-layer list of absolute TransPoints for T = 8192. With
``relative: true`` the list is scaled to the actual length (P * T / 8192, halves rounded
up, a nonzero P at least 1: ``zoo.schedule.scale``), so the same schedule serves short runs.
"""

from __future__ import annotations

from pydantic import Field

from zoo.registry import SCHEDULE
from zoo.schedule import ScheduleParams, TransPointSchedule, clamp, cyclic, scale

PAPER_SEQ_LEN = 8192

PAPER_SCHEDULES: dict[str, list[int]] = {
    "paper_transformer": [8192],
    "v1": [2048],
    "v2": [4096],
    "v3": [6144],
    "v4": [3072, 4096, 5120],
    "v5": [2048, 3072, 4096],
    "v6": [512, 1024, 2048],
    "v7": [2048, 4096, 6144],
    "v8": [0, 1024, 2048, 6144, 8192],
    "v9": [0, 128, 256, 512, 1024, 2048, 4096, 8192],
}


class PaperParams(ScheduleParams):
    relative: bool = Field(False, description="scale the T=8192 values to the actual sequence length")


def _make(name: str, values: list[int]) -> type[TransPointSchedule]:
    class PaperSchedule(TransPointSchedule):
        Params = PaperParams
        paper_values = tuple(values)

        def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
            per_layer = cyclic(list(self.paper_values), n_layers)
            if self.params.relative:
                per_layer = [scale(v, seq_len, PAPER_SEQ_LEN) for v in per_layer]
            return clamp(per_layer, seq_len)

    PaperSchedule.__name__ = PaperSchedule.__qualname__ = f"Paper{name.upper()}"
    PaperSchedule.__doc__ = f"Paper schedule {name}: cyclic {values} at T=8192 (relative: scaled to T)."
    PaperSchedule.__module__ = __name__
    return PaperSchedule


for _name, _values in PAPER_SCHEDULES.items():
    SCHEDULE.register(_name)(_make(_name, _values))
