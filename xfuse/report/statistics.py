"""Seed-level inference for ``xfuse report``: pure functions on per-seed values and bootstrap resamples.

Seeds are the unit of inference. A configuration's value is the mean of its
``S`` seeds' metric values on the test set; two sources of variation are
combined:

- **seeds**: ``V_seed = s^2 / S`` with ``s^2`` the sample variance of the
  per-seed values (training randomness, the test set held fixed);
- **test examples**: ``V_ex``, the variance over ``R`` bootstrap resamples of
  the test examples of the seed mean (the same resamples for every seed, so
  the seeds' shared test-set noise is counted once).

Both contain the seed-by-example interaction ``Var_ab / S``; it is
estimated from the per-seed resamples, ``Var_ab = S / (S - 1) (mean_s
Var*(A_s) - V_ex)``, and counted once: ``V = V_seed + V_ex - Var_ab / S``
(never below either part). The interval is ``value +- t_{0.975, nu} sqrt(V)``
with the Welch-Satterthwaite degrees of freedom ``nu = V^2 / (V_seed^2 /
(S - 1))`` (``V_ex`` is estimated from many resamples and treated as known;
``nu`` is infinite when there is one seed). It contains its point estimate by
construction; for metrics that cannot be negative (ECEs, Brier parts, NLL)
its lower end is truncated at 0. Seeds
whose metric is undefined (an AUROC when every prediction is right) are left
out and counted.

A comparison of configurations A and B (independently trained: their seeds
are not paired) is paired on the test examples: ``D = mean_A - mean_B``,
``V_ex`` the resampled variance of ``mean_A* - mean_B*`` on shared resamples,
``V = s_A^2 / S_A + s_B^2 / S_B + V_ex - Var_ab,A / S_A - Var_ab,B / S_B``,
``nu = V^2 / ((s_A^2/S_A)^2 / (S_A - 1) + (s_B^2/S_B)^2 / (S_B - 1))``, and
``p = 2 P(T_nu > |D| / sqrt(V))``. Where both sides are built from the same
runs seed by seed (late fusion against one of its own layers; one
configuration under two calibration conditions), the per-seed differences are
the replicates instead (``same_seeds``). When a side has a single seed its
seed variance cannot be estimated; the test then conditions on that run and
says so (``example_only``).

Its size, measured by ``benchmarks/paired_test_size.py`` (600 simulated
replicates in which both configurations are the same model with different
seeds, a new test set each time), and its power at a known shift are in the
README; ``tests/report/test_statistics.py`` checks both.

:func:`ece_noise_floor` is the expected binned ECE of a perfectly calibrated
model with the same confidences and number of examples: each prediction is
right with probability equal to its confidence, by simulation.

Usage::

    per_seed = np.array([0.061, 0.074, 0.052])          # ECE of three seeds on test-de
    resampled = ...                                    # (R, 3) the same ECEs on R shared resamples
    estimate = seed_interval(per_seed, resampled)      # {"value", "low", "high", "se", "dof"}
    test = paired_seed_test(per_seed, resampled, other_per_seed, other_resampled)
"""

from typing import Sequence

import numpy as np
from scipy.special import stdtr, stdtrit

from xfuse.calibration.metrics import DEFAULT_BINS, bin_index, bin_edges
from xfuse.errors import XfuseError


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in sorted order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def t_quantile(probability: float, dof: float) -> float:
    """Student's t quantile, ``scipy.stats.t.ppf(probability, dof)`` bit for bit (the same special function),
    without the distribution object's per-call overhead (the report calls it once per row)."""
    return float(stdtrit(dof, probability))


def t_upper_tail(x: float, dof: float) -> float:
    """``P(T_dof > x)``, ``scipy.stats.t.sf(x, dof)`` bit for bit."""
    return float(stdtr(dof, -x))


def bonferroni_interval(delta: float, se: float, dof: float, family_size: int, alpha: float = 0.05) -> tuple:
    """(low, high): a difference's interval at level ``1 - alpha / m`` for a family of ``m`` tests, simultaneous
    at ``1 - alpha``: ``delta +- t_{1 - alpha / (2 m), nu} se``.

    Where :func:`holm` leaves a difference not significant at ``alpha``, this
    interval contains 0 (its p-value times ``m``, Bonferroni's, is at least
    Holm's adjusted one), so the two never disagree on a null, and its ends
    are the largest changes in either direction that the null leaves open.
    """
    if int(family_size) < 1:
        raise XfuseError(f"family_size: expected an integer >= 1, got {family_size}")
    half = 0.0 if se == 0 else float(t_quantile(1 - alpha / (2 * int(family_size)), dof) * se)
    return delta - half, delta + half


def _check(per_seed, resampled, name: str) -> tuple:
    values = np.asarray(per_seed, dtype=np.float64)
    samples = np.asarray(resampled, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise XfuseError(f"{name}: expected a 1-D array of per-seed values, got shape {values.shape}")
    if samples.ndim != 2 or samples.shape[1] != values.size or samples.shape[0] < 2:
        raise XfuseError(f"{name}: expected resamples of shape (R >= 2, {values.size}), got {samples.shape}")
    return values, samples


def _parts(values: np.ndarray, samples: np.ndarray) -> tuple:
    """(seed part ``s^2 / S``, example part of the seed mean, interaction part ``Var_ab / S``) of one side.

    ``Var_ab = S / (S - 1) (mean_s Var*(A_s) - Var*(mean_s A_s))`` is the
    seed-by-example interaction, which both other parts contain; it is taken
    out once. Resamples where a seed's metric is undefined (NaN) are skipped.
    """
    finite = np.isfinite(samples).all(axis=1)
    samples = samples[finite]
    size = values.size
    if samples.shape[0] < 2:
        return (float(np.var(values, ddof=1) / size) if size > 1 else 0.0), 0.0, 0.0
    example = float(np.var(samples.mean(axis=1), ddof=1))
    if size < 2:
        return 0.0, example, 0.0
    interaction = size / (size - 1) * (float(np.mean(np.var(samples, axis=0, ddof=1))) - example)
    return float(np.var(values, ddof=1) / size), example, max(0.0, interaction) / size


def _dof(total: float, seed_parts: list) -> float:
    """Welch-Satterthwaite: ``total^2 / sum_i part_i^2 / (S_i - 1)`` over the seed parts; inf without any."""
    denominator = sum(part ** 2 / (size - 1) for part, size in seed_parts if size > 1 and part > 0)
    return float(total ** 2 / denominator) if denominator > 0 else float("inf")


def _defined_seeds(values: np.ndarray, samples: np.ndarray) -> tuple:
    """Drop seeds whose metric is undefined on the full test set (an AUROC with no wrong prediction)."""
    keep = np.isfinite(values)
    return values[keep], samples[:, keep], int((~keep).sum())


def seed_interval(per_seed, resampled, level: float = 0.95, positive: bool = False) -> dict:
    """The seed mean with a ``level`` interval over seeds and test examples (module docstring).

    ``positive``: the metric is >= 0 (an ECE, a Brier part, an NLL); the
    interval's lower end is truncated at 0. (A log-scale interval would stay
    above 0 too, but explodes upward when the standard error is large against
    a small value, as with three seeds of a near-calibrated head.)
    """
    values, samples = _check(per_seed, resampled, "per_seed")
    values, samples, dropped = _defined_seeds(values, samples)
    if values.size == 0:
        nan = float("nan")
        return {"value": nan, "low": nan, "high": nan, "se": nan, "dof": nan, "seed_se": nan, "example_se": nan,
                "undefined_seeds": dropped}
    seed_part, example_part, interaction = _parts(values, samples)
    total = max(seed_part + example_part - interaction, seed_part, example_part)
    dof = _dof(total, [(seed_part, values.size)])
    value = float(values.mean())
    quantile = t_quantile(0.5 + level / 2, dof)
    half = quantile * np.sqrt(total)
    low, high = value - half, value + half
    if positive:
        low = max(low, 0.0)
    return {"value": value, "low": float(low), "high": float(high), "se": float(np.sqrt(total)), "dof": dof,
            "seed_se": float(np.sqrt(seed_part)), "example_se": float(np.sqrt(example_part)),
            "undefined_seeds": dropped}


def paired_seed_test(per_seed, resampled, reference_per_seed, reference_resampled, level: float = 0.95,
                     same_seeds: bool = False) -> dict:
    """``value - reference``: difference of seed means, its interval and two-sided p-value (module docstring).

    Both resample arrays must come from the same resamples of the same test
    examples (rows paired). ``same_seeds``: the two sides are built from the
    same runs, seed by seed (late fusion against one of its own layers, a
    calibration condition against none), so the per-seed differences are the
    replicates: :func:`seed_interval` of the differences (their seed variance
    and their example-level variance, Welch-Satterthwaite degrees of freedom).
    ``example_only`` is True when a side has fewer than two seeds: its seed
    variance is unknown, and the test is about those runs, not the methods.
    """
    a, a_samples = _check(per_seed, resampled, "per_seed")
    b, b_samples = _check(reference_per_seed, reference_resampled, "reference_per_seed")
    if a_samples.shape[0] != b_samples.shape[0]:
        raise XfuseError(f"resamples: expected the same number of paired resamples, got {a_samples.shape[0]} "
                         f"and {b_samples.shape[0]}")
    if same_seeds:
        if a.size != b.size:
            raise XfuseError(f"same_seeds: expected the same seeds on both sides, got {a.size} and {b.size}")
        difference = seed_interval(a - b, a_samples - b_samples, level)
        delta, total, dof = difference["value"], difference["se"] ** 2, difference["dof"]
        example_only = np.isfinite(a - b).sum() < 2
        seed_parts = ((difference["seed_se"] ** 2, int(np.isfinite(a - b).sum())),)
    else:
        a, a_samples, _ = _defined_seeds(a, a_samples)
        b, b_samples, _ = _defined_seeds(b, b_samples)
        seed_parts = ()
        if a.size == 0 or b.size == 0:
            delta = total = dof = float("nan")
        else:
            delta = float(a.mean() - b.mean())
            (seed_a, _, interaction_a), (seed_b, _, interaction_b) = _parts(a, a_samples), _parts(b, b_samples)
            differences = a_samples.mean(axis=1) - b_samples.mean(axis=1)
            differences = differences[np.isfinite(differences)]
            example_part = float(np.var(differences, ddof=1)) if differences.size > 1 else 0.0
            total = max(seed_a + seed_b + example_part - interaction_a - interaction_b, seed_a + seed_b)
            dof = _dof(total, [(seed_a, a.size), (seed_b, b.size)])
            seed_parts = ((seed_a, a.size), (seed_b, b.size))
        example_only = a.size < 2 or b.size < 2
    if not np.isfinite(delta):
        p_value, half = float("nan"), float("nan")
    elif total == 0:
        p_value, half = (1.0 if delta == 0 else 0.0), 0.0
    else:
        se = np.sqrt(total)
        p_value = 2 * t_upper_tail(abs(delta) / se, dof)
        half = t_quantile(0.5 + level / 2, dof) * se
    return {"delta": delta, "low": delta - half, "high": delta + half, "p_value": p_value, "dof": dof,
            "se": float(np.sqrt(total)), "example_only": bool(example_only), "seed_parts": seed_parts}


def equivalence_test(delta: float, se: float, dof: float, margin: float) -> float:
    """Two one-sided tests (TOST) of ``|true difference| < margin``: the larger of the p-values of
    ``H0: difference <= -margin`` (``P(T_nu > (delta + margin) / se)``) and ``H0: difference >= margin``
    (``P(T_nu < (delta - margin) / se)``). Below ``alpha`` exactly when the ``1 - 2 alpha`` interval
    ``delta +- t_{1 - alpha, nu} se`` lies inside ``(-margin, margin)``: the two are equivalent within the margin."""
    if not margin > 0:
        raise XfuseError(f"margin: expected a positive equivalence margin, got {margin}")
    if not np.isfinite(delta) or not np.isfinite(se):
        return float("nan")
    if se == 0:
        return 0.0 if abs(delta) < margin else 1.0
    return max(t_upper_tail((delta + margin) / se, dof), t_upper_tail((margin - delta) / se, dof))


def projected_half_width(se: float, seed_parts, seeds: int, level: float = 0.95) -> float:
    """The half-width a comparison's interval would have with ``seeds`` seeds per side, at its variance estimates.

    ``seed_parts``: (``s^2 / S``, ``S``) per side, as :func:`paired_seed_test`
    returns them. Each seed part becomes ``s^2 / seeds``; the rest of the
    variance (test examples, net of the interaction) is held fixed; the
    degrees of freedom are Welch-Satterthwaite's with ``seeds - 1`` per side.
    A projection, not a draw: it assumes the seed variances stay as estimated.
    """
    if int(seeds) < 2:
        raise XfuseError(f"seeds: expected an integer >= 2, got {seeds}")
    rest = max(0.0, se ** 2 - sum(part for part, _ in seed_parts))
    parts = [(part * size / int(seeds), int(seeds)) for part, size in seed_parts]
    total = rest + sum(part for part, _ in parts)
    return t_quantile(0.5 + level / 2, _dof(total, parts)) * float(np.sqrt(total))


def ece_noise_floor(confidence, bins: int = DEFAULT_BINS, equal_mass: bool = False, simulations: int = 200,
                    seed: int = 0) -> dict:
    """The binned ECE of a perfectly calibrated model with these top-label confidences, by simulation.

    Each simulation draws ``right_i ~ Bernoulli(confidence_i)`` and computes
    the ECE over the bins of ``confidence`` (equal width, or equal mass with
    the edges of the given confidences, as :func:`xfuse.calibration.metrics.adaptive_ece`).
    Returns the simulated ``mean`` and ``p95``: an observed ECE below them is
    what a calibrated model of this sharpness and sample size shows.
    """
    return ece_noise_floors(confidence, bins, [equal_mass], simulations, seed)[0]


def ece_noise_floors(confidence, bins: int, equal_mass: Sequence[bool], simulations: int = 200,
                     seed: int = 0) -> list:
    """:func:`ece_noise_floor` for each binning in ``equal_mass``, from one set of simulated outcomes (the same
    draws each would make alone with this ``seed``)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 1 or confidence.size == 0:
        raise XfuseError(f"confidence: expected a non-empty 1-D array, got shape {confidence.shape}")
    if int(simulations) < 1:
        raise XfuseError(f"simulations: expected an integer >= 1, got {simulations}")
    draws = np.random.default_rng(seed).random((int(simulations), confidence.size))  # (S, N)
    right = (draws < confidence).astype(np.float64)
    floors = []
    for mass in equal_mass:
        edges = bin_edges(confidence, bins, equal_mass=mass)
        membership = np.eye(len(edges) - 1)[bin_index(confidence, edges)]  # (N, K)
        gaps = (confidence[None, :] - right) @ membership  # (S, K): n_b (conf_b - acc_b)
        values = np.abs(gaps).sum(axis=1) / confidence.size
        floors.append({"mean": float(values.mean()), "p95": float(np.percentile(values, 95))})
    return floors
