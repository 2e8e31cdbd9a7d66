"""Check the schedule-robustness goal on a compare.json (default: this directory's; README.md here).

Goal: a recipe whose worst evaluation schedule is within 5% of its best (spread <= 0.05)
while its v9 loss stays within 1% of the v9-trained recipe's. Prints, per recipe, the
spread over all evaluated schedules and over the paper's v1..v9 alone, the v9 gap, each
with its 95% interval over seeds, and whether the goal is met by the mean and by the
interval's upper end.

When the file also holds a recipe trained with attention only (P = T in every layer), it
prints the bound that recipe sets: a recipe that meets the v9 goal and whose all-attention
loss is no lower than the attention-only model's has a spread of at least
attention-only loss / (1.01 * the v9-trained model's v9 loss) - 1, paired by seed.

    PYTHONPATH=. python docs/experiments/table9-cpu/goal.py [COMPARE_JSON]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from zoo.training.robustness import recipe_summary
from zoo.training.stats import t_interval

HERE = Path(__file__).parent
SPREAD_GOAL, V9_GOAL = 0.05, 0.01
PAPER = [f"v{i}" for i in range(1, 10)]


def percent(cell: dict) -> str:
    if cell["ci95"] is None:
        return f"{100 * cell['mean']:+.2f}% (one seed: no interval)"
    return f"{100 * cell['mean']:+.2f}% ± {100 * cell['ci95']:.2f}% (upper {100 * cell['high']:+.2f}%)"


def upper(cell: dict) -> float:
    return cell["mean"] if cell["high"] is None else cell["high"]


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "compare.json"
    record = json.loads(path.read_text())
    robust = record["robustness"]
    for entry in robust["recipes"]:
        group = [r for r in record["rows"] if r["model"] == entry["model"] and r["lr"] == entry["lr"]]
        spread = entry["loss"]["spread"]
        paper = recipe_summary(group, PAPER)["spread"]
        gap = entry["v9_vs_reference"]
        print(f"{entry['model']}: spread over {', '.join(robust['schedules'])}: {percent(spread)}")
        print(f"  spread over v1..v9 only: {percent(paper)}")
        print(f"  v9 loss vs {robust['reference']}: {percent(gap)}")
        by_mean = spread["mean"] <= SPREAD_GOAL and gap["mean"] <= V9_GOAL
        by_interval = upper(spread) <= SPREAD_GOAL and upper(gap) <= V9_GOAL
        print(f"  goal (spread <= 5%, v9 gap <= 1%): by the mean {by_mean}, by the interval {by_interval}")
    attention_bound(record)


def runs_of(record: dict, model: str, lr: float) -> dict[int, dict]:
    """The finished runs of one recipe (model label and learning rate), by seed."""
    return {
        r["seed"]: r
        for r in record["rows"]
        if r["model"] == model and r["lr"] == lr and not r.get("diverged") and "schedule_eval" in r
    }


def mean_under(runs: dict[int, dict], schedule: str) -> float:
    """Mean loss of ``runs`` under ``schedule``; inf when a run lacks it or it is not finite."""
    values = [r["schedule_eval"].get(schedule, {}).get("eval_loss", math.inf) for r in runs.values()]
    mean = sum(values) / len(values) if values else math.inf
    return mean if math.isfinite(mean) else math.inf


def attention_bound(record: dict) -> None:
    """The spread floor set by the attention path trained alone (module notes), paired by seed.

    The V9 reference is the comparison's own (``robustness.reference`` at its chosen rate); the
    attention-only model is, among the recipes trained with ``attention_only`` at their chosen
    rates, the one with the lowest all-attention loss (the floor that holds for the others too).
    """
    robust = record["robustness"]
    recipes = robust["recipes"]
    reference = next((e for e in recipes if e["model"] == robust["reference"]), None)
    candidates = [runs_of(record, e["model"], e["lr"]) for e in recipes if e["trained"]["name"] == "attention_only"]
    candidates = [runs for runs in candidates if math.isfinite(mean_under(runs, "attention"))]
    if reference is None or not candidates:
        return
    v9 = runs_of(record, reference["model"], reference["lr"])
    only = min(candidates, key=lambda runs: mean_under(runs, "attention"))
    seeds = sorted(s for s in set(only) & set(v9) if "v9" in v9[s]["schedule_eval"])
    if not seeds:
        return
    floors = [
        only[s]["schedule_eval"]["attention"]["eval_loss"] / ((1 + V9_GOAL) * v9[s]["schedule_eval"]["v9"]["eval_loss"])
        - 1
        for s in seeds
    ]
    cell = t_interval(floors).to_dict()
    low = "" if cell["low"] is None else f" (low end {100 * cell['low']:+.2f}%)"
    names = f"{only[seeds[0]]['model']} lr {only[seeds[0]]['lr']:g} against {reference['model']} lr {reference['lr']:g}"
    print("attention-only bound, over schedules that include all-attention: a recipe within 1% of v9")
    print("  whose all-attention loss is no lower than the attention-only model's has a spread of at least")
    print(f"  {100 * cell['mean']:+.2f}% ± {100 * (cell['ci95'] or 0):.2f}%{low} (seeds {seeds}; {names})")


if __name__ == "__main__":
    main()
