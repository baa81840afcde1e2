"""The size of xfuse's seed-level paired test, and of a two-level bootstrap, under the null (xfuse.statistics).

Both configurations are the same simulated model trained with different seeds (a per-seed rescaling, shift and
per-example noise of the true logit, as in tests/test_statistics.py); every replicate draws a new test set. Prints
the fraction of replicates each test rejects at level 0.05, for ECE and accuracy, with 3 and 5 seeds a side.

    python benchmarks/paired_test_size.py [--replicates 600]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm

from xfuse import calibration as cal
from xfuse.statistics import paired_seed_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_statistics import _seed_probabilities  # noqa: E402  the same simulated seeds as the test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=600)
    parser.add_argument("--examples", type=int, default=300)
    args = parser.parse_args()
    metrics = ("ece", "accuracy")
    print(f"{'seeds':>5} {'test':>26} " + " ".join(f"{m:>9}" for m in metrics))
    for seeds in (3, 5):
        rng = np.random.default_rng(seeds)
        rejected = {"seed-level t (xfuse)": dict.fromkeys(metrics, 0), "two-level bootstrap": dict.fromkeys(metrics, 0)}
        for replicate in range(args.replicates):
            truth = logit(rng.beta(2, 2, args.examples))
            labels = (rng.random(args.examples) < expit(truth)).astype(int)
            counts = cal.resample_counts(args.examples, 200, replicate)
            sides = []
            for _ in range(2):
                values, resampled = {m: [] for m in metrics}, {m: [] for m in metrics}
                for _ in range(seeds):
                    probs = _seed_probabilities(truth, rng)
                    samples = cal.resampled_metrics(probs, labels, counts, 10, metrics)
                    for m in metrics:
                        values[m].append(cal.metric_value(m, probs, labels, 10))
                        resampled[m].append(samples[m])
                sides.append((values, resampled))
            for m in metrics:
                (a, a_res), (b, b_res) = [(np.array(v[m]), np.stack(r[m], axis=1)) for v, r in sides]
                rejected["seed-level t (xfuse)"][m] += paired_seed_test(a, a_res, b, b_res)["p_value"] < 0.05
                pick_a, pick_b = rng.integers(0, seeds, (200, seeds)), rng.integers(0, seeds, (200, seeds))
                delta = (np.take_along_axis(a_res, pick_a, 1).mean(1) - np.take_along_axis(b_res, pick_b, 1).mean(1))
                rejected["two-level bootstrap"][m] += 2 * norm.sf(abs(a.mean() - b.mean()) / delta.std(ddof=1)) < 0.05
        for test, counts_ in rejected.items():
            print(f"{seeds:>5} {test:>26} " + " ".join(f"{counts_[m] / args.replicates:9.3f}" for m in metrics))


if __name__ == "__main__":
    main()
