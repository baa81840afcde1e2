"""The size and power of xfuse's seed-level paired test (xfuse.report.statistics), by simulation.

A simulated "training seed" rescales and shifts the true logit and adds per-example noise (as in
tests/report/test_statistics.py); every replicate draws a new test set of 300 examples and new seeds. Scenarios:

- null, 3 and 5 seeds a side: both configurations are the same model; the rejection rate is the test's size;
- shift, 3 seeds a side: the second configuration's seeds are sharper (logit scale 1.8 instead of 1.3), the same
  ranking, so ECE differs and accuracy barely does; the rejection rate is the power;
- null, 1 seed against 3: the seed variance of one side is unknown; the test says so (example_only).

Prints the rejection rate at level 0.05 for ECE and accuracy.

    python benchmarks/paired_test_size.py [--replicates 600]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from xfuse.calibration import metrics as cal
from xfuse.report.statistics import paired_seed_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_statistics import rejection_rates  # noqa: E402  the same simulation as the test

SCENARIOS = (("null, 3 seeds a side", 3, 3, 1.3), ("null, 5 seeds a side", 5, 5, 1.3),
             ("shift, 3 seeds a side", 3, 3, 1.8), ("null, 1 seed against 3", 1, 3, 1.3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=600)
    args = parser.parse_args()
    print(f"{'scenario':>26} {'ece':>7} {'accuracy':>9} {'flagged example_only':>21}")
    for number, (name, seeds_a, seeds_b, scale_b) in enumerate(SCENARIOS):
        rates, flagged = rejection_rates(args.replicates, seeds_a, seeds_b, scale_b, seed=number)
        print(f"{name:>26} {rates['ece']:7.3f} {rates['accuracy']:9.3f} {flagged:21.3f}")


if __name__ == "__main__":
    main()
