"""Statistics over seeds: the mean and its 95% Student-t interval.

A comparison trains every model with n seeds (initialisation and data order both follow the
seed) and reports ``mean +- t(0.975, n-1) * s / sqrt(n)``, ``s`` the sample standard deviation
over the seeds: the interval that covers the expected value of the metric (over seeds) 95% of
the time if the per-seed values are roughly normal. With n = 3 the factor is 4.30, so an
interval from three seeds is wide; that is the honest width of three samples. One seed gives
no interval (``half_width`` is None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# t(0.975, df) for df = 1..30 (standard tables); larger df use the Cornish-Fisher expansion.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (3 decimals)."""
    if df < 1:
        raise ValueError(f"Student's t needs df >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float | None  # None with one value
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci95": self.half_width, "low": self.low, "high": self.high, "n": self.n}

    def format(self, digits: int = 4) -> str:
        """``digits`` significant digits of the mean, two of the half-width; trailing zeros kept
        (3.000 ± 0.20, not 3 ± 0.2: a zero is a measured digit)."""
        if self.half_width is None:
            return significant(self.mean, digits)
        return f"{significant(self.mean, digits)} ± {significant(self.half_width, 2)}"


def significant(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros kept, no bare trailing point."""
    text = f"{value + 0.0:#.{digits}g}"  # + 0.0: -0.0 prints as 0
    mantissa, exponent = text.split("e") if "e" in text else (text, None)
    mantissa = mantissa.removesuffix(".")
    return mantissa if exponent is None else f"{mantissa}e{exponent}"


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval half-width of ``values`` (non-finite values make the mean NaN)."""
    n = len(values)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, None, 1)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return Interval(mean, t_quantile_975(n - 1) * math.sqrt(variance / n), n)
