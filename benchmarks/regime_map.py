"""Regime map: where MOTOR wins and where it loses, against the data and the backbone.

    python benchmarks/regime_map.py --points docs/data/regime_points.csv --out docs/img/regime_map.png

Reads one row per (dataset, backbone) measurement, already reported in docs/benchmarks.md (the
``source`` column names the section and its command), and draws two panels:

* left: MOTOR's relative change of test Recall@20 over the ID table (%) against the dataset's
  training interactions per item (log scale);
* right: the same change against how well content alone does there, content-kNN's test Recall@20
  divided by the ID backbone's.

Filled markers: the backbone's item side already reads the features (an item-item content graph,
a feature half of the item vector, modality towers or an alignment loss); hollow: its item side is
the ID table alone. A cross marks a change that is not significant (p >= 0.05) or has one seed.
Prints the rows it plotted, so the figure can be checked against the tables.

CSV columns (header row required): dataset, backbone, train_per_item, knn_over_id,
reads_features (yes/no), delta_pct, p (empty for one seed), seeds, source.
"""
import argparse
import csv
import os
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmrec_motor.experiments.tables import save_png  # noqa: E402

COLUMNS = ("dataset", "backbone", "train_per_item", "knn_over_id", "reads_features", "delta_pct", "p",
           "seeds", "source")


def read_points(path: str) -> List[Dict[str, Any]]:
    """The CSV's rows with numbers parsed; a missing column or a bad value raises ValueError naming
    the file, the row and the column."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                point = dict(row)
                for key in ("train_per_item", "knn_over_id", "delta_pct"):
                    point[key] = float(row[key])
                point["p"] = float(row["p"]) if row["p"].strip() else None
                point["seeds"] = int(row["seeds"])
            except ValueError as err:
                raise ValueError(f"{path}, row {line}: {err}") from None
            if row["reads_features"] not in ("yes", "no"):
                raise ValueError(f"{path}, row {line}: reads_features must be yes or no, got "
                                 f"{row['reads_features']!r}")
            if point["train_per_item"] <= 0:
                raise ValueError(f"{path}, row {line}: train_per_item must be > 0, got {point['train_per_item']}")
            rows.append(point)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def significant(point: Dict[str, Any]) -> bool:
    return point["seeds"] > 1 and point["p"] is not None and point["p"] < 0.05


def draw(rows: List[Dict[str, Any]], path: str) -> bool:
    colours = {"sports20": "tab:red", "sports": "tab:orange", "lfm2k": "tab:blue"}

    def panel(ax, key: str, label: str, log: bool) -> None:
        ax.axhline(0.0, color="grey", lw=0.8)
        for point in rows:
            colour = colours.get(point["dataset"], "tab:green")
            face = colour if point["reads_features"] == "yes" else "none"
            marker = "o" if significant(point) else "X"
            ax.scatter(point[key], point["delta_pct"], s=60, marker=marker, facecolors=face,
                       edgecolors=colour, linewidths=1.5, zorder=3)
            ax.annotate(point["backbone"], (point[key], point["delta_pct"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        if log:
            ax.set_xscale("log")
            ticks = sorted({point[key] for point in rows})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.set_xticks([], minor=True)
        ax.set_xlabel(label)
        ax.set_ylabel("MOTOR vs ID, test Recall@20 (%)")
        ax.grid(True, alpha=0.3)

    def both(axes) -> None:
        panel(axes[0][0], "train_per_item", "training interactions per item", True)
        panel(axes[0][1], "knn_over_id", "content-kNN R@20 / ID R@20", False)
        present = {point["dataset"] for point in rows}
        handles = [axes[0][0].scatter([], [], color=c, label=d) for d, c in colours.items() if d in present]
        axes[0][0].legend(handles=handles, fontsize=8, loc="upper right",
                          title="filled: item side reads features; X: n.s. or 1 seed", title_fontsize=7)

    return save_png(path, 1, 2, 5.5, 4.2, both)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", required=True, help="CSV of measurements (see the module docstring)")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    rows = read_points(args.points)
    for point in rows:
        p = "n/a" if point["p"] is None else f"{point['p']:.2g}"
        print(f"{point['dataset']:9s} {point['backbone']:9s} train/item {point['train_per_item']:5.1f} "
              f"kNN/ID {point['knn_over_id']:.2f} reads features {point['reads_features']:3s} "
              f"delta {point['delta_pct']:+6.1f}% p {p} seeds {point['seeds']}")
    if not draw(rows, args.out):
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
