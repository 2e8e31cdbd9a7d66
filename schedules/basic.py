"""Basic schedules: constant, cyclic, attention_only, ssm_only, random, mixture, phases."""

from __future__ import annotations

import random as _random

from pydantic import Field, ValidationError, model_validator

from zoo.errors import first_error_line
from zoo.registry import SCHEDULE
from zoo.schedule import ScheduleParams, TransPointSchedule, clamp, cyclic, from_fractions, scale


class ConstantParams(ScheduleParams):
    value: int | None = Field(None, ge=0, description="absolute TransPoint for every layer")
    fraction: float | None = Field(None, ge=0, le=1, description="TransPoint as a fraction of T")

    @model_validator(mode="after")
    def _one(self) -> ConstantParams:
        if (self.value is None) == (self.fraction is None):
            raise ValueError("give exactly one of 'value' (absolute) or 'fraction' (of T)")
        return self


@SCHEDULE.register("constant")
class Constant(TransPointSchedule):
    """Every layer switches at the same P (absolute, or a fraction of T)."""

    Params = ConstantParams

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        p = self.params
        value = p.value if p.value is not None else scale(p.fraction, seq_len)
        return clamp([value] * n_layers, seq_len)


class CyclicParams(ScheduleParams):
    values: list[int] | None = Field(None, min_length=1, description="absolute TransPoints, cycled over layers")
    fractions: list[float] | None = Field(None, min_length=1, description="fractions of T, cycled over layers")

    @model_validator(mode="after")
    def _one(self) -> CyclicParams:
        if (self.values is None) == (self.fractions is None):
            raise ValueError("give exactly one of 'values' (absolute) or 'fractions' (of T)")
        if self.values is not None and min(self.values) < 0:
            raise ValueError("values must be >= 0")
        if self.fractions is not None and not all(0 <= f <= 1 for f in self.fractions):
            raise ValueError("fractions must lie in [0, 1]")
        return self


@SCHEDULE.register("cyclic")
class Cyclic(TransPointSchedule):
    """Layer l takes list[l % len(list)] (absolute values or fractions of T)."""

    Params = CyclicParams

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        p = self.params
        values = p.values if p.values is not None else from_fractions(p.fractions, seq_len)
        return clamp(cyclic(values, n_layers), seq_len)


@SCHEDULE.register("attention_only")
class AttentionOnly(TransPointSchedule):
    """P = T for every layer: the model runs as a (grouped-attention) Transformer."""

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        return [seq_len] * n_layers


@SCHEDULE.register("ssm_only")
class SSMOnly(TransPointSchedule):
    """P = 0 for every layer: the model runs as Mamba2."""

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        return [0] * n_layers


V9_FRACTIONS = [0.0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]


class RandomParams(ScheduleParams):
    fractions: list[float] = Field(
        default_factory=lambda: list(V9_FRACTIONS),
        min_length=1,
        description="the values a layer's P may take, as fractions of T",
    )
    n_variants: int = Field(8, ge=1, le=1024, description="how many per-layer lists are pre-drawn (= graphs)")
    seed: int = 0
    eval_fractions: list[float] = Field(
        default_factory=lambda: list(V9_FRACTIONS),
        min_length=1,
        description="cyclic schedule used when no step is given (evaluation, generation)",
    )

    @model_validator(mode="after")
    def _range(self) -> RandomParams:
        if not all(0 <= f <= 1 for f in [*self.fractions, *self.eval_fractions]):
            raise ValueError("fractions and eval_fractions must lie in [0, 1]")
        return self


@SCHEDULE.register("random")
class RandomSchedule(TransPointSchedule):
    """Training-time random TransPoints from a bounded set (n_variants graphs at most).

    ``n_variants`` per-layer lists are drawn once from ``fractions`` (seeded). Step s uses
    variant hash(seed, s) % n_variants, so a compiled model compiles at most n_variants
    graphs per sequence length (raise torch._dynamo.config.cache_size_limit to match).
    """

    Params = RandomParams
    is_random = True

    @property
    def n_variants(self) -> int:
        """The most distinct per-layer lists its steps give (one compiled graph each per length)."""
        return self.params.n_variants

    def variants(self, n_layers: int) -> list[list[float]]:
        rng = _random.Random(self.params.seed)
        return [[rng.choice(self.params.fractions) for _ in range(n_layers)] for _ in range(self.params.n_variants)]

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        if step is None:
            fractions = cyclic(self.params.eval_fractions, n_layers)
        else:
            index = _random.Random(f"{self.params.seed}:{step}").randrange(self.params.n_variants)
            fractions = self.variants(n_layers)[index]
        return clamp(from_fractions(fractions, seq_len), seq_len)


class MixtureComponent(ScheduleParams):
    name: str = Field(description="a registered schedule, e.g. v9 or random")
    params: dict = Field(default_factory=dict, description="that schedule's params")
    weight: float = Field(1.0, gt=0, description="relative share of the training steps")


class MixtureParams(ScheduleParams):
    components: list[MixtureComponent] = Field(
        min_length=1, description="the schedules a training step picks from; the first one evaluates"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _known(self) -> MixtureParams:
        for i, component in enumerate(self.components):
            if component.name in ("mixture", "phases"):
                raise ValueError(f"components[{i}]: a mixture's components cannot be mixtures or phases")
            _check_part(f"components[{i}]", component.name, component.params)
        return self


def _check_part(where: str, name: str, params: dict) -> None:
    """A part of a composite schedule (a mixture's component, a phase) builds, or one ValueError
    line naming the part and its bad field."""
    try:
        SCHEDULE.get(name).obj(params)
    except ValidationError as exc:  # bad params, as one line naming the part and field
        raise ValueError(f"{where} ({name}): {first_error_line(exc)}") from None
    except Exception as exc:  # an unknown name
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{where} ({name}): {first}") from None


@SCHEDULE.register("mixture")
class Mixture(TransPointSchedule):
    """Training steps split between schedules: step s uses component i with probability
    weight_i / sum(weights) (picked by a hash of seed and s, so runs repeat), and that
    component's TransPoints for step s. Without a step (evaluation, generation, the trained
    record) it is the first component. ``{"components": [{"name": "v9", "params":
    {"relative": true}}, {"name": "random"}]}`` trains half the steps under V9, half under
    random TransPoints, and evaluates under V9."""

    Params = MixtureParams
    is_random = True

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.components = [SCHEDULE.get(c.name).obj(c.params) for c in self.params.components]
        self.weights = [c.weight for c in self.params.components]

    @property
    def n_variants(self) -> int:
        """The most distinct per-layer lists its steps can give (one compiled graph each per
        length): a random component's ``n_variants``, 1 for a deterministic one, summed."""
        return sum(getattr(c, "n_variants", 1) for c in self.components)

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        if step is None:
            return self.components[0].transpoints(n_layers, seq_len)
        rng = _random.Random(f"{self.params.seed}:mixture:{step}")
        (component,) = rng.choices(self.components, weights=self.weights)
        return component.transpoints(n_layers, seq_len, step=step)


class Phase(ScheduleParams):
    name: str = Field(description="a registered schedule, e.g. mixture or v9")
    params: dict = Field(default_factory=dict, description="that schedule's params")
    steps: int | None = Field(
        None, ge=1, description="training steps this phase lasts; the last phase has none (it runs to the end)"
    )


class PhasesParams(ScheduleParams):
    phases: list[Phase] = Field(
        min_length=1, description="schedules one after another by training step; the last one evaluates"
    )

    @model_validator(mode="after")
    def _known(self) -> PhasesParams:
        last = len(self.phases) - 1
        for i, phase in enumerate(self.phases):
            if phase.name == "phases":
                raise ValueError(f"phases[{i}]: a phase cannot itself be phases")
            if i < last and phase.steps is None:
                raise ValueError(f"phases[{i}] ({phase.name}): steps: give how many training steps it lasts")
            if i == last and phase.steps is not None:
                raise ValueError(f"phases[{i}] ({phase.name}): steps: the last phase runs to the end; drop steps")
            _check_part(f"phases[{i}]", phase.name, phase.params)
        return self


@SCHEDULE.register("phases")
class Phases(TransPointSchedule):
    """Training in phases: the first phase's schedule for its ``steps`` training steps, then the
    next one's, and the last one's to the end of training (a step inside a phase is passed on
    as it is, so a mixture or random phase draws as it would alone). Without a step
    (evaluation, generation, the trained record) it is the last phase's schedule.
    ``{"phases": [{"name": "mixture", "params": {...}, "steps": 900}, {"name": "v9", "params":
    {"relative": true}}]}`` trains 900 steps under a mixture, then under V9 alone, and
    evaluates under V9."""

    Params = PhasesParams
    is_random = True  # the trainer asks it for every step's TransPoints

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.schedules = [SCHEDULE.get(p.name).obj(p.params) for p in self.params.phases]
        self.ends = []  # the first step after each phase but the last
        end = 0
        for phase in self.params.phases[:-1]:
            end += phase.steps
            self.ends.append(end)

    @property
    def n_variants(self) -> int:
        """The most distinct per-layer lists its steps can give (one compiled graph each per
        length): each phase's ``n_variants`` (1 for a deterministic one), summed."""
        return sum(getattr(s, "n_variants", 1) for s in self.schedules)

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        if step is None:
            return self.schedules[-1].transpoints(n_layers, seq_len)
        phase = sum(step >= end for end in self.ends)
        return self.schedules[phase].transpoints(n_layers, seq_len, step=step)
