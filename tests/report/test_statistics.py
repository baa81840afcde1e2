"""Seed-level inference and the ECE noise floor: explicit recomputations, a size simulation under the null."""

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import t as student_t

from xfuse.calibration import metrics as cal
from xfuse.errors import XfuseError
from xfuse.report.statistics import (bonferroni_interval, ece_noise_floor, equivalence_test, holm, paired_seed_test,
                                     projected_half_width, seed_interval)


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_bonferroni_interval_hand_computed_and_never_disagrees_with_holm_on_a_null():
    # t_{1 - 0.05 / 10, 10} = t_{0.995, 10} = 3.1693 (printed tables): half-width 3.1693 * 0.004
    low, high = bonferroni_interval(0.010, 0.004, 10, 5, 0.05)
    assert (low, high) == pytest.approx((0.010 - 0.0126772, 0.010 + 0.0126772), abs=1e-6)
    assert bonferroni_interval(0.01, 0.0, 4, 3) == (0.01, 0.01)
    rng = np.random.default_rng(0)
    for _ in range(200):  # a family of m tests: where Holm keeps the null, the adjusted interval holds 0
        m = int(rng.integers(1, 30))
        delta, se, dof = rng.normal(0, 0.02, m), rng.uniform(0.002, 0.02, m), rng.uniform(2, 20, m)
        p = 2 * student_t.sf(np.abs(delta) / se, dof)
        for d, s_, nu, adjusted in zip(delta, se, dof, holm(p)):
            low, high = bonferroni_interval(d, s_, nu, m)
            if adjusted >= 0.05:
                assert low <= 0 <= high
    with pytest.raises(XfuseError, match="family_size: expected an integer >= 1, got 0"):
        bonferroni_interval(0.1, 0.1, 3, 0)


def test_equivalence_test_rejects_exactly_when_the_90_percent_interval_lies_inside_the_margin():
    # delta 0.002, se 0.003, 10 dof, margin 0.01: the upper test's t = (0.002 - 0.01) / 0.003 = -2.667 decides;
    # P(T_10 > 2.667) lies between P(T_10 > 2.764) = 0.01 and P(T_10 > 2.228) = 0.025 (printed tables)
    p = equivalence_test(0.002, 0.003, 10, 0.01)
    assert 0.01 < p < 0.025
    rng = np.random.default_rng(1)
    for delta, se, dof in zip(rng.normal(0, 0.01, 300), rng.uniform(0.001, 0.01, 300), rng.uniform(2, 30, 300)):
        half = student_t.ppf(0.95, dof) * se
        assert (equivalence_test(delta, se, dof, 0.01) < 0.05) == (-0.01 < delta - half and delta + half < 0.01)
    assert equivalence_test(0.005, 0.0, 4, 0.01) == 0.0 and equivalence_test(0.02, 0.0, 4, 0.01) == 1.0
    with pytest.raises(XfuseError, match="margin: expected a positive equivalence margin, got 0"):
        equivalence_test(0.0, 0.1, 3, 0)


def test_projected_half_width_hand_computed_and_unchanged_at_the_seeds_it_was_estimated_on():
    # one side of per-seed differences, s^2 / 5 = 0.0003, no example part: at 3 seeds s^2 / 3 = 0.0005 and
    # t_{0.975, 2} = 4.3027 (printed tables)
    assert projected_half_width(np.sqrt(0.0003), ((0.0003, 5),), 3) == pytest.approx(4.3027 * np.sqrt(0.0005), rel=1e-4)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.05, 0.01, 5), rng.normal(0.04, 0.01, 5)
    a_samples = a[None, :] + rng.normal(0, 0.004, (300, 1)) + rng.normal(0, 0.001, (300, 5))
    b_samples = b[None, :] + rng.normal(0, 0.004, (300, 1)) + rng.normal(0, 0.001, (300, 5))
    test = paired_seed_test(a, a_samples, b, b_samples)
    assert projected_half_width(test["se"], test["seed_parts"], 5) == pytest.approx(test["high"] - test["delta"])
    assert projected_half_width(test["se"], test["seed_parts"], 3) > test["high"] - test["delta"]
    with pytest.raises(XfuseError, match="seeds: expected an integer >= 2, got 1"):
        projected_half_width(0.1, ((0.01, 5),), 1)


def test_seed_interval_equals_an_explicit_computation():
    per_seed = np.array([0.10, 0.13, 0.07])
    rng = np.random.default_rng(0)
    resampled = per_seed + rng.normal(0, 0.01, size=(50, 1)) + rng.normal(0, 0.004, size=(50, 3))
    means = [sum(row) / 3 for row in resampled]  # explicit loops over resamples and seeds
    example_var = sum((m - sum(means) / 50) ** 2 for m in means) / 49
    per_seed_var = [sum((resampled[r, s] - resampled[:, s].mean()) ** 2 for r in range(50)) / 49 for s in range(3)]
    interaction = 3 / 2 * (sum(per_seed_var) / 3 - example_var)
    seed_var = sum((v - 0.1) ** 2 for v in per_seed) / 2 / 3
    total = seed_var + example_var - interaction / 3
    dof = total ** 2 / (seed_var ** 2 / 2)
    half = student_t.ppf(0.975, dof) * np.sqrt(total)
    result = seed_interval(per_seed, resampled)
    assert result["value"] == pytest.approx(0.1)
    assert result["dof"] == pytest.approx(dof)
    assert (result["low"], result["high"]) == pytest.approx((0.1 - half, 0.1 + half))
    positive = seed_interval(per_seed, resampled, positive=True)  # a metric >= 0: the lower end truncated at 0
    assert (positive["low"], positive["high"]) == pytest.approx((max(0.0, 0.1 - half), 0.1 + half))
    undefined = seed_interval([0.7, np.nan, 0.8], np.column_stack([np.full(5, 0.7), np.full(5, np.nan), np.full(5, 0.8)]))
    assert undefined["value"] == pytest.approx(0.75) and undefined["undefined_seeds"] == 1


def test_paired_test_equals_an_explicit_computation_and_one_seed_is_example_only():
    a, b = np.array([0.30, 0.34, 0.29]), np.array([0.25, 0.27])
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.02, size=(40, 1))  # the examples' shared noise: pairing cancels it
    a_res, b_res = a + shared + rng.normal(0, 0.005, (40, 3)), b + shared + rng.normal(0, 0.005, (40, 2))
    differences = a_res.mean(axis=1) - b_res.mean(axis=1)

    def interaction(values, samples):
        size = values.size
        return max(0.0, size / (size - 1) * (np.var(samples, axis=0, ddof=1).mean()
                                             - np.var(samples.mean(axis=1), ddof=1))) / size

    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 2
    total = max(va + vb + np.var(differences, ddof=1) - interaction(a, a_res) - interaction(b, b_res), va + vb)
    dof = total ** 2 / (va ** 2 / 2 + vb ** 2 / 1)
    delta = a.mean() - b.mean()
    result = paired_seed_test(a, a_res, b, b_res)
    assert result["delta"] == pytest.approx(delta)
    assert result["dof"] == pytest.approx(dof)
    assert result["p_value"] == pytest.approx(2 * student_t.sf(abs(delta) / np.sqrt(total), dof))
    assert not result["example_only"]
    assert paired_seed_test(a[:1], a_res[:, :1], b, b_res)["example_only"]  # one side's seed variance unknown
    # the same runs seed by seed: a one-sample test on the per-seed differences
    shift = np.array([0.01, 0.02, 0.015])
    same = paired_seed_test(a, a_res, a - shift, a_res - shift + rng.normal(0, 0.001, (40, 3)), same_seeds=True)
    assert same["delta"] == pytest.approx(0.015) and 2 <= same["dof"] < np.inf


def _seed_probabilities(truth_logit, rng, scale=1.3):
    """One "training seed" of a model: the true logit, rescaled and shifted per seed, with per-example noise."""
    return expit(truth_logit * rng.normal(scale, 0.25) + rng.normal(0, 0.3) + rng.normal(0, 0.6, truth_logit.size))


def rejection_rates(replicates: int, seeds_a: int, seeds_b: int, scale_b: float = 1.3, seed: int = 0,
                    n: int = 300, alpha: float = 0.05) -> tuple:
    """({metric: rate}, rate of example_only) of the paired test on simulated pairs of configurations."""
    rng = np.random.default_rng(seed)
    rejected, flagged = {"ece": 0, "accuracy": 0}, 0
    for replicate in range(replicates):
        truth = logit(rng.beta(2, 2, n))
        labels = (rng.random(n) < expit(truth)).astype(int)
        counts = cal.resample_counts(n, 200, replicate)
        sides = []
        for seeds, scale in ((seeds_a, 1.3), (seeds_b, scale_b)):
            values, resampled = {name: [] for name in rejected}, {name: [] for name in rejected}
            for _ in range(seeds):
                probs = _seed_probabilities(truth, rng, scale)
                samples = cal.resampled_metrics(probs, labels, counts, 10, tuple(rejected))
                for name in rejected:
                    values[name].append(cal.metric_value(name, probs, labels, 10))
                    resampled[name].append(samples[name])
            sides.append((values, resampled))
        for name in rejected:
            (a, a_res), (b, b_res) = [(np.array(v[name]), np.stack(r[name], axis=1)) for v, r in sides]
            test = paired_seed_test(a, a_res, b, b_res)
            rejected[name] += test["p_value"] < alpha
            flagged += test["example_only"] and name == "ece"
    return {name: count / replicates for name, count in rejected.items()}, flagged / replicates


@pytest.mark.parametrize("seeds", [3, 5])
def test_paired_test_keeps_its_size_when_both_configurations_are_the_same_model(seeds):
    """Two configurations that are the same model with different seeds: rejections at most alpha + MC error."""
    replicates, alpha = 400, 0.05
    rates, flagged = rejection_rates(replicates, seeds, seeds, seed=seeds)
    monte_carlo = 2.5 * np.sqrt(alpha * (1 - alpha) / replicates)
    for name, rate in rates.items():
        assert rate <= alpha + monte_carlo, (name, rate)
    assert rates["ece"] > 0.005 and flagged == 0  # not a test that never rejects


def test_paired_test_finds_a_known_calibration_shift_and_flags_a_single_seed():
    rates, _ = rejection_rates(150, 3, 3, scale_b=2.4, seed=7)
    assert rates["ece"] > 0.3  # much sharper seeds, the same ranking: ECE differs
    _, flagged = rejection_rates(20, 1, 3, seed=8)
    assert flagged == 1.0


def test_noise_floor_equals_a_direct_simulation_with_the_same_draws():
    rng = np.random.default_rng(3)
    p1 = rng.beta(5, 2, 400)
    confidence, _ = cal.top_label(p1, np.zeros(400, dtype=int))
    floor = ece_noise_floor(confidence, bins=15, simulations=50, seed=9)
    draws = np.random.default_rng(9).random((50, 400))
    direct = []
    for row in draws:  # labels that make each prediction right with probability equal to its confidence
        right = row < confidence
        predicted = (p1 > 0.5).astype(int)
        labels = np.where(right, predicted, 1 - predicted)
        direct.append(cal.ece(p1, labels, 15))
    assert floor["mean"] == pytest.approx(np.mean(direct), abs=1e-12)
    assert floor["p95"] == pytest.approx(np.percentile(direct, 95), abs=1e-12)
    adaptive = ece_noise_floor(confidence, bins=15, equal_mass=True, simulations=50, seed=9)
    direct = [cal.adaptive_ece(p1, np.where(row < confidence, p1 > 0.5, p1 <= 0.5).astype(int), 15) for row in draws]
    assert adaptive["mean"] == pytest.approx(np.mean(direct), abs=1e-12)


def test_noise_floor_of_one_bin_is_the_mean_absolute_deviation_of_a_binomial_mean():
    # every confidence 0.7, one bin: ECE = |0.7 - mean(right)|, about sqrt(2 / pi) sqrt(0.21 / N)
    floor = ece_noise_floor(np.full(2000, 0.7), bins=15, simulations=4000, seed=0)
    assert floor["mean"] == pytest.approx(np.sqrt(2 / np.pi) * np.sqrt(0.21 / 2000), rel=0.05)
    # sharper, more examples: a lower floor
    assert ece_noise_floor(np.full(8000, 0.95), simulations=500)["mean"] < floor["mean"]


def test_inputs_are_checked_with_expected_and_received():
    with pytest.raises(XfuseError, match=r"expected resamples of shape \(R >= 2, 3\), got \(10, 2\)"):
        seed_interval([0.1, 0.2, 0.3], np.zeros((10, 2)))
    with pytest.raises(XfuseError, match=r"confidence: expected a non-empty 1-D array"):
        ece_noise_floor(np.zeros((2, 2)))
