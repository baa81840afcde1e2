"""Seed-level inference and the ECE noise floor: explicit recomputations, a size simulation under the null."""

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import t as student_t

from xfuse import calibration as cal
from xfuse.errors import XfuseError
from xfuse.statistics import ece_noise_floor, holm, paired_seed_test, seed_interval


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_seed_interval_equals_an_explicit_computation():
    per_seed = np.array([0.10, 0.13, 0.07])
    rng = np.random.default_rng(0)
    resampled = per_seed + rng.normal(0, 0.01, size=(50, 3))
    means = [sum(row) / 3 for row in resampled]  # explicit loop over resamples
    example_var = sum((m - sum(means) / 50) ** 2 for m in means) / 49
    seed_var = sum((v - 0.1) ** 2 for v in per_seed) / 2 / 3
    total = example_var + seed_var
    dof = total ** 2 / (seed_var ** 2 / 2)
    half = student_t.ppf(0.975, dof) * np.sqrt(total)
    result = seed_interval(per_seed, resampled)
    assert result["value"] == pytest.approx(0.1)
    assert result["dof"] == pytest.approx(dof)
    assert (result["low"], result["high"]) == pytest.approx((0.1 - half, 0.1 + half))
    assert result["low"] <= result["value"] <= result["high"]


def test_paired_test_equals_an_explicit_computation_and_one_seed_is_example_only():
    a, b = np.array([0.30, 0.34, 0.29]), np.array([0.25, 0.27])
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.02, size=(40, 1))  # the examples' shared noise: pairing cancels it
    a_res, b_res = a + shared + rng.normal(0, 0.005, (40, 3)), b + shared + rng.normal(0, 0.005, (40, 2))
    differences = a_res.mean(axis=1) - b_res.mean(axis=1)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 2
    total = np.var(differences, ddof=1) + va + vb
    dof = total ** 2 / (va ** 2 / 2 + vb ** 2 / 1)
    delta = a.mean() - b.mean()
    result = paired_seed_test(a, a_res, b, b_res)
    assert result["delta"] == pytest.approx(delta)
    assert result["dof"] == pytest.approx(dof)
    assert result["p_value"] == pytest.approx(2 * student_t.sf(abs(delta) / np.sqrt(total), dof))
    assert not result["example_only"]
    single = paired_seed_test(a[:1], a_res[:, :1], b[:1], b_res[:, :1])
    assert single["example_only"] and single["dof"] == float("inf")


def _seed_probabilities(truth_logit, rng):
    """One "training seed" of a model: the true logit, rescaled and shifted per seed, with per-example noise."""
    return expit(truth_logit * rng.normal(1.3, 0.25) + rng.normal(0, 0.3) + rng.normal(0, 0.6, truth_logit.size))


@pytest.mark.parametrize("seeds", [3, 5])
def test_paired_test_keeps_its_size_when_both_configurations_are_the_same_model(seeds):
    """Two configurations that are the same model with different seeds: rejections at most alpha + MC error."""
    rng = np.random.default_rng(seeds)
    replicates, n, alpha = 400, 300, 0.05
    rejected = {"ece": 0, "accuracy": 0}
    for replicate in range(replicates):
        truth = logit(rng.beta(2, 2, n))
        labels = (rng.random(n) < expit(truth)).astype(int)
        counts = cal.resample_counts(n, 200, replicate)
        sides = []
        for _ in range(2):
            values, resampled = {name: [] for name in rejected}, {name: [] for name in rejected}
            for _ in range(seeds):
                probs = _seed_probabilities(truth, rng)
                samples = cal.resampled_metrics(probs, labels, counts, 10, tuple(rejected))
                for name in rejected:
                    values[name].append(cal.metric_value(name, probs, labels, 10))
                    resampled[name].append(samples[name])
            sides.append((values, resampled))
        for name in rejected:
            (a, a_res), (b, b_res) = [(np.array(v[name]), np.stack(r[name], axis=1)) for v, r in sides]
            rejected[name] += paired_seed_test(a, a_res, b, b_res)["p_value"] < alpha
    monte_carlo = 2.5 * np.sqrt(alpha * (1 - alpha) / replicates)
    for name, count in rejected.items():
        assert count / replicates <= alpha + monte_carlo, (name, count / replicates)


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
