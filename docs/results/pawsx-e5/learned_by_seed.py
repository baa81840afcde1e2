"""Learned runs by seed group: the seeds used while choosing the recipe (0 to 2) against the fresh ones (3 and 4).

The training recipe (docs/training-recipe.md) was chosen on seeds 0 to 2, so
their outcomes shaped it; seeds 3 and 4 played no part. If the recipe fits its
own seeds, the learned rate is higher on 0 to 2. For each head, over the
finished tasks: learned runs of all runs per group, and a two-sided Fisher
exact test of the two rates (runs of one head share layers and batch orders,
so the test is indicative, not exact).

Usage, from the repository root::

    python docs/results/pawsx-e5/learned_by_seed.py docs/results/pawsx-e5/results
"""

import json
import sys
from pathlib import Path

from scipy.stats import fisher_exact

RECIPE_SEEDS = (0, 1, 2)


def counts(results: Path) -> dict:
    """head -> group ("recipe", "fresh") -> [learned, runs], from each finished result's metrics.json."""
    table = {}
    for metrics_path in sorted(results.glob("*/metrics.json")):
        head, _, seed = metrics_path.parent.name.rpartition("-s")
        head = head.split("-L")[0]
        group = "recipe" if int(seed) in RECIPE_SEEDS else "fresh"
        learned = bool(json.loads(metrics_path.read_text())["learned"]["learned"])
        cell = table.setdefault(head, {"recipe": [0, 0], "fresh": [0, 0]})[group]
        cell[0] += learned
        cell[1] += 1
    return table


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: learned_by_seed.py RESULTS_FOLDER (a sweep's results/)", file=sys.stderr)
        return 2
    table = counts(Path(argv[0]))
    total = {"recipe": [0, 0], "fresh": [0, 0]}
    print("head         seeds 0-2 learned   seeds 3-4 learned   Fisher p")
    for head, groups in sorted(table.items()) + [("all", total)]:
        if head != "all":
            for group in total:
                total[group][0] += groups[group][0]
                total[group][1] += groups[group][1]
        (a, n), (b, m) = groups["recipe"], groups["fresh"]
        p = fisher_exact([[a, n - a], [b, m - b]]).pvalue if n and m else float("nan")
        print(f"{head:<12} {a:>4} of {n:<4} {a / n if n else float('nan'):>6.2f}   "
              f"{b:>4} of {m:<4} {b / m if m else float('nan'):>6.2f}   {p:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
