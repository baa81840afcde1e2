"""Seed-level inference for ``xfuse report``: pure functions on per-seed values and bootstrap resamples.

Seeds are the unit of inference. A configuration's value is the mean of its
``S`` seeds' metric values on the test set; two sources of variation are
combined:

- **seeds**: ``V_seed = s^2 / S`` with ``s^2`` the sample variance of the
  per-seed values (training randomness, the test set held fixed);
- **test examples**: ``V_ex``, the variance over ``R`` bootstrap resamples of
  the test examples of the seed mean (the same resamples for every seed, so
  the seeds' shared test-set noise is counted once).

The interval is ``value +- t_{0.975, nu} sqrt(V_seed + V_ex)`` with the
Welch-Satterthwaite degrees of freedom ``nu = V^2 / (V_seed^2 / (S - 1))``
(``V_ex`` is estimated from many resamples and treated as known; ``nu`` is
infinite when it dominates). The interval contains its point estimate by
construction. Both variances include the seed-by-example interaction, so the
sum errs on the conservative side.

A comparison of configurations A and B (independently trained: their seeds
are not paired) is paired on the test examples: ``D = mean_A - mean_B``,
``V_ex`` the resampled variance of ``mean_A* - mean_B*`` on shared resamples,
``V_seed = s_A^2 / S_A + s_B^2 / S_B``,
``nu = V^2 / ((s_A^2/S_A)^2 / (S_A - 1) + (s_B^2/S_B)^2 / (S_B - 1))``, and
``p = 2 P(T_nu > |D| / sqrt(V))``. With a single seed on both sides the seed
variance cannot be estimated; the test then conditions on those runs
(example-level only, ``nu`` infinite), and :func:`paired_seed_test` says so.

Its size, measured by ``benchmarks/paired_test_size.py`` (600 simulated
replicates in which both configurations are the same model with different
seeds, a new test set each time): at level 0.05 it rejected 0.020 (ECE) and
0.015 (accuracy) of the time with 3 seeds a side, 0.017 and 0.012 with 5. It
is conservative, as said above; a two-level bootstrap (resample seeds, then
examples, Wald p-value) was as conservative in the same simulation (0.017,
0.013; 0.010, 0.005) and, with three seeds, has only ten distinct seed
resamples to draw from, so xfuse uses the closed form.

:func:`ece_noise_floor` is the expected binned ECE of a perfectly calibrated
model with the same confidences and number of examples: each prediction is
right with probability equal to its confidence, by simulation.

Usage::

    per_seed = np.array([0.061, 0.074, 0.052])          # ECE of three seeds on test-de
    resampled = ...                                    # (R, 3) the same ECEs on R shared resamples
    estimate = seed_interval(per_seed, resampled)      # {"value", "low", "high", "se", "dof"}
    test = paired_seed_test(per_seed, resampled, other_per_seed, other_resampled)
"""

import numpy as np
from scipy.stats import t as student_t

from .calibration import DEFAULT_BINS, _bin_index, bin_edges
from .errors import XfuseError


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in sorted order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def _check(per_seed, resampled, name: str) -> tuple:
    values = np.asarray(per_seed, dtype=np.float64)
    samples = np.asarray(resampled, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise XfuseError(f"{name}: expected a 1-D array of per-seed values, got shape {values.shape}")
    if samples.ndim != 2 or samples.shape[1] != values.size or samples.shape[0] < 2:
        raise XfuseError(f"{name}: expected resamples of shape (R >= 2, {values.size}), got {samples.shape}")
    return values, samples


def _seed_part(values: np.ndarray) -> float:
    """``s^2 / S``, 0 for one seed."""
    return float(np.var(values, ddof=1) / values.size) if values.size > 1 else 0.0


def _dof(total: float, seed_parts: list) -> float:
    """Welch-Satterthwaite: ``total^2 / sum_i part_i^2 / (S_i - 1)`` over the seed parts; inf without any."""
    denominator = sum(part ** 2 / (size - 1) for part, size in seed_parts if size > 1 and part > 0)
    return float(total ** 2 / denominator) if denominator > 0 else float("inf")


def seed_interval(per_seed, resampled, level: float = 0.95) -> dict:
    """The seed mean with a ``level`` interval over seeds and test examples (module docstring)."""
    values, samples = _check(per_seed, resampled, "per_seed")
    finite = np.isfinite(samples).all(axis=1)
    example_part = float(np.var(samples[finite].mean(axis=1), ddof=1)) if finite.sum() > 1 else 0.0
    seed_part = _seed_part(values)
    total = example_part + seed_part
    dof = _dof(total, [(seed_part, values.size)])
    value = float(values.mean())
    half = float(student_t.ppf(0.5 + level / 2, dof) * np.sqrt(total)) if total > 0 else 0.0
    return {"value": value, "low": value - half, "high": value + half, "se": float(np.sqrt(total)), "dof": dof,
            "seed_se": float(np.sqrt(seed_part)), "example_se": float(np.sqrt(example_part))}


def paired_seed_test(per_seed, resampled, reference_per_seed, reference_resampled, level: float = 0.95) -> dict:
    """``value - reference``: difference of seed means, its interval and two-sided p-value (module docstring).

    Both resample arrays must come from the same resamples of the same test
    examples (rows paired). ``example_only`` is True when neither side has two
    seeds, so that the test is about those runs, not the methods.
    """
    a, a_samples = _check(per_seed, resampled, "per_seed")
    b, b_samples = _check(reference_per_seed, reference_resampled, "reference_per_seed")
    if a_samples.shape[0] != b_samples.shape[0]:
        raise XfuseError(f"resamples: expected the same number of paired resamples, got {a_samples.shape[0]} "
                         f"and {b_samples.shape[0]}")
    delta = float(a.mean() - b.mean())
    differences = a_samples.mean(axis=1) - b_samples.mean(axis=1)
    differences = differences[np.isfinite(differences)]
    example_part = float(np.var(differences, ddof=1)) if differences.size > 1 else 0.0
    parts = [(_seed_part(a), a.size), (_seed_part(b), b.size)]
    total = example_part + parts[0][0] + parts[1][0]
    dof = _dof(total, parts)
    if total == 0:
        p_value, half = (1.0 if delta == 0 else 0.0), 0.0
    else:
        se = np.sqrt(total)
        p_value = float(2 * student_t.sf(abs(delta) / se, dof))
        half = float(student_t.ppf(0.5 + level / 2, dof) * se)
    return {"delta": delta, "low": delta - half, "high": delta + half, "p_value": p_value, "dof": dof,
            "se": float(np.sqrt(total)), "example_only": a.size < 2 and b.size < 2}


def ece_noise_floor(confidence, bins: int = DEFAULT_BINS, equal_mass: bool = False, simulations: int = 200,
                    seed: int = 0) -> dict:
    """The binned ECE of a perfectly calibrated model with these top-label confidences, by simulation.

    Each simulation draws ``right_i ~ Bernoulli(confidence_i)`` and computes
    the ECE over the bins of ``confidence`` (equal width, or equal mass with
    the edges of the given confidences, as :func:`xfuse.calibration.adaptive_ece`).
    Returns the simulated ``mean`` and ``p95``: an observed ECE below them is
    what a calibrated model of this sharpness and sample size shows.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 1 or confidence.size == 0:
        raise XfuseError(f"confidence: expected a non-empty 1-D array, got shape {confidence.shape}")
    if int(simulations) < 1:
        raise XfuseError(f"simulations: expected an integer >= 1, got {simulations}")
    edges = bin_edges(confidence, bins, equal_mass=equal_mass)
    membership = np.eye(len(edges) - 1)[_bin_index(confidence, edges)]  # (N, K)
    draws = np.random.default_rng(seed).random((int(simulations), confidence.size))  # (S, N)
    right = (draws < confidence).astype(np.float64)
    gaps = (confidence[None, :] - right) @ membership  # (S, K): n_b (conf_b - acc_b)
    values = np.abs(gaps).sum(axis=1) / confidence.size
    return {"mean": float(values.mean()), "p95": float(np.percentile(values, 95))}
