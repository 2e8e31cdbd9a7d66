"""Plot time vs T per backend from a ``benchmarks/gpu_ssd.py`` report (its markdown table).

    python benchmarks/plot_ssd.py benchmarks/results/ssd-h200.md benchmarks/results/ssd_time_vs_T.png

Needs matplotlib (the ``plot`` extra). Only the B=1 rows are plotted (time against T).
"""

from __future__ import annotations

import sys
from pathlib import Path


def read_table(report: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the '### SSD forward / forward+backward' table."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### SSD forward / forward+backward"))
    table = [line for line in lines[start + 1 :] if line.startswith("|")]
    rows = []
    for line in table[2:]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    return header, rows


def main(report_path: str, out_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    header, rows = read_table(Path(report_path).read_text())
    rows = [row for row in rows if row[0] == "1"]
    seq_lens = [int(row[1]) for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for column, name in enumerate(header[2:], start=2):
        backend, kind = name.rsplit(" ", 1)
        ax = axes[0] if kind == "fwd" else axes[1]
        ax.plot(seq_lens, [float(row[column]) for row in rows], marker="o", label=backend)
    for ax, title in zip(axes, ("forward", "forward + backward"), strict=True):
        ax.set(yscale="log", xlabel="T (tokens), B = 1", ylabel="ms (median)", title=title)
        ax.set_xscale("log", base=2)
        ax.set_xticks(seq_lens, [f"{t // 1024}K" for t in seq_lens])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("SSD, bf16, H=48 P=64 N=128 G=8, H200: " + Path(report_path).name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    print(out_path)


if __name__ == "__main__":
    main(*sys.argv[1:3])
