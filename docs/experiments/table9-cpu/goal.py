"""Check the schedule-robustness goal on a compare.json (default: this directory's; README.md here).

Goal: a recipe whose worst evaluation schedule is within 5% of its best (spread <= 0.05)
while its v9 loss stays within 1% of the v9-trained recipe's. Prints, per recipe, the
spread over all evaluated schedules and over the paper's v1..v9 alone, the v9 gap, each
with its 95% interval over seeds, and whether the goal is met by the mean and by the
interval's upper end.

    PYTHONPATH=. python docs/experiments/table9-cpu/goal.py [COMPARE_JSON]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zoo.training.robustness import recipe_summary

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


if __name__ == "__main__":
    main()
