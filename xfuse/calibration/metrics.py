"""Calibration metrics for binary classifiers: pure functions on probabilities and labels.

Every function takes ``probs``, either (N, 2) class probabilities or (N,)
probabilities of class 1, and ``labels`` (N,) in {0, 1}. Two quantities are
measured, and each docstring says which:

- **top-label**: the confidence is ``max(p, 1 - p)`` (the probability of the
  predicted class) and the outcome is whether the prediction is right. This is
  what "ECE" usually means. Feeding ``P(y = 1)`` in its place, as netcal and
  torchmetrics do for one-column binary input, measures something else: a
  model that always says 0.2 for a class-0 example is then judged
  against the frequency of class 1 at 0.2, not against its 80% confidence.
- **class-1 / classwise**: the probability of each class against that class's
  frequency (Brier score, its decomposition, classwise ECE).

Binning follows ``numpy.histogram``: ``bins`` equal-width intervals over
[0, 1], each closed on the left and open on the right except the last, which
is closed; equal-mass bins take their inner edges at quantiles of the
confidence and keep 0 and 1 as outer edges. Empty bins count nothing.

``bootstrap_intervals`` resamples the N examples with replacement
``n_resamples`` times and returns each metric's 2.5% and 97.5% percentiles.

Usage::

    probs = softmax(logits)                      # (N, 2)
    summary = calibration_summary(probs, labels, bins=15, n_resamples=1000, seed=0)
    summary["ece"]                              # {"value": ..., "low": ..., "high": ...}
"""

import functools
from typing import Optional

import numpy as np
from scipy import sparse

from xfuse.errors import XfuseError

DEFAULT_BINS = 15
_EPS = 1e-12


def check_probs(probs) -> np.ndarray:
    """Probabilities of class 1, (N,) float64, from (N,) or (N, 2) input summing to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2:
        if probs.shape[1] != 2 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-5):
            raise XfuseError(f"probs: expected (N, 2) rows summing to 1, got shape {probs.shape}")
        probs = probs[:, 1]
    if probs.ndim != 1 or probs.size == 0:
        raise XfuseError(f"probs: expected a non-empty (N,) or (N, 2) array, got shape {probs.shape}")
    if not np.all((probs >= 0) & (probs <= 1)):
        raise XfuseError("probs: expected values in [0, 1]")
    return probs


def check_labels(labels, size: int) -> np.ndarray:
    """Labels as (N,) int64 in {0, 1}, of the same length as the probabilities."""
    labels = np.asarray(labels)
    if labels.shape != (size,):
        raise XfuseError(f"labels: expected shape ({size},), got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise XfuseError(f"labels: expected 0 or 1, got {sorted(set(np.unique(labels).tolist()) - {0, 1})[:3]}")
    return labels.astype(np.int64)


def _inputs(probs, labels) -> tuple:
    p1 = check_probs(probs)
    return p1, check_labels(labels, p1.size)


def predicted_class(p1) -> np.ndarray:
    """1 where ``P(y = 1) > 0.5``, else 0: ties go to class 0, as ``argmax`` of two equal logits sends them.

    The one tie rule of xfuse: accuracy, top-label confidence, the training
    curve's accuracy and every diagnostic use it.
    """
    return (np.asarray(p1) > 0.5).astype(np.int64)


def top_label(probs, labels) -> tuple:
    """(confidence, correct): ``max(p, 1 - p)`` and whether the predicted class (:func:`predicted_class`) is right."""
    p1, y = _inputs(probs, labels)
    predicted = predicted_class(p1)
    return np.where(predicted == 1, p1, 1.0 - p1), (predicted == y).astype(np.float64)


def accuracy(probs, labels) -> float:
    """Fraction of examples whose top-label prediction is right."""
    return float(top_label(probs, labels)[1].mean())


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped at 1e-12."""
    p1, y = _inputs(probs, labels)
    p_true = np.where(y == 1, p1, 1.0 - p1)
    return float(-np.log(np.clip(p_true, _EPS, 1.0)).mean())


def brier(probs, labels) -> float:
    """Binary Brier score, ``mean((P(y=1) - y)^2)`` (scikit-learn's ``brier_score_loss``).

    The two-class sum ``sum_k (p_k - 1[y=k])^2`` is exactly twice this.
    """
    p1, y = _inputs(probs, labels)
    return float(np.mean((p1 - y) ** 2))


def bin_edges(confidence: np.ndarray, bins: int = DEFAULT_BINS, equal_mass: bool = False) -> np.ndarray:
    """``bins + 1`` edges over [0, 1]: equal width, or inner edges at quantiles of ``confidence``."""
    if int(bins) < 1:
        raise XfuseError(f"bins: expected an integer >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    if equal_mass:
        edges = np.quantile(confidence, edges)
        edges[0], edges[-1] = 0.0, 1.0
    return edges


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value, numpy.histogram style (last bin closed)."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, edges: np.ndarray) -> dict:
    """Per bin: ``count``, mean ``confidence`` and mean ``outcome`` (NaN where empty), and ``edges``."""
    index = bin_index(confidence, edges)
    count = np.bincount(index, minlength=len(edges) - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=len(edges) - 1) / count
        mean_outcome = np.bincount(index, outcome, minlength=len(edges) - 1) / count
    return {"edges": edges, "count": count, "confidence": mean_confidence, "accuracy": mean_outcome}


def _binned_gaps(confidence, outcome, edges) -> tuple:
    table = reliability_bins(confidence, outcome, edges)
    filled = table["count"] > 0
    return np.abs(table["confidence"] - table["accuracy"])[filled], table["count"][filled]


def ece(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """Top-label expected calibration error, equal-width bins.

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over the bins of ``max(p, 1 - p)``.
    """
    confidence, correct = top_label(probs, labels)
    gaps, counts = _binned_gaps(confidence, correct, bin_edges(confidence, bins))
    return float(np.sum(gaps * counts) / confidence.size)


def adaptive_ece(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with equal-mass bins (edges at quantiles of the confidence)."""
    confidence, correct = top_label(probs, labels)
    gaps, counts = _binned_gaps(confidence, correct, bin_edges(confidence, bins, equal_mass=True))
    return float(np.sum(gaps * counts) / confidence.size)


def mce(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """Top-label maximum calibration error: ``max_b |acc_b - conf_b|`` over non-empty equal-width bins."""
    confidence, correct = top_label(probs, labels)
    gaps, _ = _binned_gaps(confidence, correct, bin_edges(confidence, bins))
    return float(gaps.max())


def classwise_ece(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """Classwise ECE: the mean over both classes k of the ECE of ``P(y=k)`` against ``1[y=k]``."""
    p1, y = _inputs(probs, labels)
    total = 0.0
    for p_class, is_class in ((1.0 - p1, (y == 0).astype(np.float64)), (p1, (y == 1).astype(np.float64))):
        gaps, counts = _binned_gaps(p_class, is_class, bin_edges(p_class, bins))
        total += np.sum(gaps * counts) / y.size
    return float(total / 2)


def brier_decomposition(probs, labels, bins: int = DEFAULT_BINS) -> dict:
    """Murphy's decomposition of the binary Brier score over equal-width bins of ``P(y=1)``.

    ``reliability = sum_b n_b (p_b - o_b)^2 / N``, ``resolution = sum_b n_b (o_b - o)^2 / N``,
    ``uncertainty = o (1 - o)``, with ``p_b`` the bin's mean forecast, ``o_b`` its
    frequency of class 1 and ``o`` the overall one. Then
    ``brier ~= reliability - resolution + uncertainty``, exactly so when the
    forecasts within each bin are equal.
    """
    p1, y = _inputs(probs, labels)
    table = reliability_bins(p1, y.astype(np.float64), bin_edges(p1, bins))
    filled = table["count"] > 0
    counts, forecast, observed = table["count"][filled], table["confidence"][filled], table["accuracy"][filled]
    base_rate = y.mean()
    return {
        "reliability": float(np.sum(counts * (forecast - observed) ** 2) / y.size),
        "resolution": float(np.sum(counts * (observed - base_rate) ** 2) / y.size),
        "uncertainty": float(base_rate * (1 - base_rate)),
    }


def signed_calibration_error(probs, labels) -> float:
    """Mean top-label confidence minus accuracy: > 0 overconfident, < 0 underconfident."""
    confidence, correct = top_label(probs, labels)
    return float(np.mean(confidence - correct))


def brier_reliability(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """The calibration part of the Brier score: ``sum_b n_b (p_b - o_b)^2 / N`` over equal-width bins of ``P(y=1)``.

    The same term as :func:`brier_decomposition`'s ``reliability``.
    """
    return brier_decomposition(probs, labels, bins)["reliability"]


def brier_refinement(probs, labels, bins: int = DEFAULT_BINS) -> float:
    """The refinement part of the Brier score, ``brier - brier_reliability`` (DeGroot and Fienberg 1983).

    With binned forecasts this is ``uncertainty - resolution`` plus the
    forecasts' spread within their bins, so the two parts add up to the Brier
    score exactly.
    """
    return brier(probs, labels) - brier_reliability(probs, labels, bins)


def _ranked_groups(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray) -> tuple:
    """(right, wrong): the weights (R, N) of right and of wrong predictions in each group of tied confidences.

    Both (G, R), groups in increasing confidence (groups first, so that sums over
    groups run along contiguous memory). One sparse product ``A^T weights^T``
    with ``A`` (N, 2G) putting each example in its group's "right" or "wrong" column.
    """
    order = np.argsort(confidence, kind="stable")
    ordered = confidence[order]
    group = np.empty(confidence.size, dtype=np.int64)
    group[order] = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    groups = int(group.max()) + 1 if confidence.size else 0
    columns = np.where(correct > 0.5, group, group + groups)
    membership = sparse.csr_matrix((np.ones(confidence.size), (np.arange(confidence.size), columns)),
                                   shape=(confidence.size, 2 * groups))
    both = np.ascontiguousarray(membership.T @ weights.T)  # (2G, R)
    return both[:groups], both[groups:]


def _running_sum(values: np.ndarray) -> np.ndarray:
    """``np.cumsum(values, axis=0)`` of (G, R), the same sums in the same order.

    For many columns, row by row: numpy accumulates along the first axis of a
    (2000, 1000) matrix about five times slower than a loop of row additions.
    """
    if values.ndim != 2 or values.shape[1] < 64 or not len(values):
        return np.cumsum(values, axis=0)
    out = np.empty_like(values)
    out[0] = values[0]
    for row in range(1, len(values)):
        np.add(out[row - 1], values[row], out=out[row])
    return out


def _auroc_from_groups(right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """``sum_g P_g (N_<g + N_g / 2) / (P N)`` over ascending groups (G, R): (R,); NaN where a class has no weight."""
    below = _running_sum(wrong) - wrong
    total = right.sum(axis=0) * wrong.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sum(right * (below + wrong / 2), axis=0) / np.where(total > 0, total, 1), np.nan)


def _aurc_from_groups(right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """``sum_g c_g E_g / C_g / sum_g c_g`` over groups (G, R) in decreasing confidence: (R,) (:func:`_weighted_aurc`)."""
    mass, wrong = (right + wrong)[::-1], wrong[::-1]
    accepted = _running_sum(mass)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(accepted > 0, _running_sum(wrong) / np.where(accepted > 0, accepted, 1), 0.0)
    return np.sum(mass * risk, axis=0) / mass.sum(axis=0)


def _weighted_auroc(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``confidence`` for ``correct`` under example weights (R, N): (R,); NaN where a class has no weight.

    ``sum_g P_g (N_<g + N_g / 2) / (P N)`` over groups ``g`` of tied confidences in increasing order,
    with ``P_g``, ``N_g`` the weights of right and wrong predictions in the group (ties count one half).
    """
    return _auroc_from_groups(*_ranked_groups(confidence, correct, weights))


def _weighted_aurc(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area under the risk-coverage curve under example weights (R, N): (R,).

    Predictions are accepted in decreasing confidence; tied confidences enter
    together, as a threshold cannot split them. Group ``g`` of weight ``c_g``
    contributes ``c_g E_g / C_g`` with ``C_g`` and ``E_g`` the weight and the
    wrong weight accepted up to it, over the total weight: with unit weights
    and no ties, ``(1/N) sum_k (errors among the k most confident) / k``
    (Geifman et al. 2019).
    """
    return _aurc_from_groups(*_ranked_groups(confidence, correct, weights))


def auroc(probs, labels) -> float:
    """Selective prediction: the AUROC of the top-label confidence for telling right predictions from wrong ones.

    0.5 when confidence does not rank them, 1 when every right prediction is
    more confident than every wrong one; NaN when all are right or all wrong.
    """
    confidence, correct = top_label(probs, labels)
    return float(_weighted_auroc(confidence, correct, np.ones((1, confidence.size)))[0])


def aurc(probs, labels) -> float:
    """Selective prediction: the area under the risk-coverage curve (lower is better; see :func:`_weighted_aurc`)."""
    confidence, correct = top_label(probs, labels)
    return float(_weighted_aurc(confidence, correct, np.ones((1, confidence.size)))[0])


def smooth_ece_at(confidence: np.ndarray, outcome: np.ndarray, sigma: float) -> float:
    """Smooth ECE at bandwidth ``sigma`` (Blasiok and Nakkiran 2023), computed as relplot does.

    With residuals ``r_i = f_i - y_i``, the Gaussian kernel ``phi_s`` reflected
    at 0 and 1, and a mesh of ``M = max(200, round(10 / sigma))`` points ``t``:
    ``smECE_s = sum_t |sum_i K(t, f_i) r_i| / sum_t (sum_i K(t, f_i) + 1e-4)``.
    The kernel sums are evaluated on a grid of ``G = max(2000, round(20 / s)) // 2 + 1``
    points: each ``f_i`` is split linearly between its two grid neighbours, the
    grid is convolved with ``phi_s`` sampled over offsets in [-0.5, 0.5] after
    reflecting it at both ends, and the result is interpolated linearly at ``t``.
    """
    mesh = np.linspace(0.0, 1.0, max(200, round(10 / sigma)))
    numerator = _kernel_sum(confidence, confidence - outcome, sigma, mesh)
    density = _kernel_sum(confidence, np.ones_like(confidence), sigma, mesh) + 1e-4
    return float(np.sum(np.abs(numerator)) / np.sum(density))


def _grid_size(sigma: float) -> int:
    """Points of the grid that :func:`_kernel_sum` convolves on, for bandwidth ``sigma``."""
    return max(2000, round(20 / sigma)) // 2 + 1


def _gaussian(axis: np.ndarray, sigma: float) -> np.ndarray:
    """``phi_s`` sampled at offsets ``axis - 0.5``."""
    return np.exp(-0.5 * ((axis - 0.5) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def _kernel_sum(points: np.ndarray, weights: np.ndarray, sigma: float, mesh: np.ndarray) -> np.ndarray:
    """``sum_i w_i K(t, x_i)`` at each mesh point ``t``, on the grid described in :func:`smooth_ece_at`."""
    size = _grid_size(sigma)
    scaled = points * (size - 1)
    lower = np.clip(scaled.astype(int), 0, size - 2)
    fraction = scaled - lower
    grid = (np.bincount(lower, (1 - fraction) * weights, minlength=size)
            + np.bincount(lower + 1, fraction * weights, minlength=size))
    axis = np.linspace(0.0, 1.0, size)
    kernel = _gaussian(axis, sigma)
    reflected = np.concatenate([grid[::-1][:-1], grid, grid[::-1][1:]])
    smoothed = np.convolve(reflected, kernel, "valid")[size // 2 : size // 2 + size]
    return np.interp(mesh, axis, smoothed)


def smooth_ece(probs, labels, tolerance: float = 0.001, refinements: int = 10) -> float:
    """Top-label smooth ECE with its bandwidth chosen as the fixed point ``sigma = smECE_sigma``.

    The fixed point is found as relplot does: halving the interval (0, 1]
    ``refinements`` times, keeping the largest ``sigma`` known to satisfy
    ``smECE_sigma <= sigma`` (or ``sigma < tolerance``); see :func:`smooth_ece_at`.
    """
    confidence, correct = top_label(probs, labels)
    return smooth_ece_at(confidence, correct, smooth_ece_bandwidth(confidence, correct, tolerance, refinements))


def smooth_ece_bandwidth(confidence, outcome, tolerance: float = 0.001, refinements: int = 10) -> float:
    """The bandwidth of :func:`smooth_ece` (bisection on ``sigma < smECE_sigma``)."""
    def too_wide(sigma: float) -> bool:
        return sigma < tolerance or sigma < smooth_ece_at(confidence, outcome, sigma)

    if too_wide(1.0):
        return 1.0
    high, low = 1.0, 0.0
    for _ in range(refinements):
        middle = (high + low) / 2
        if too_wide(middle):
            low = middle
        else:
            high = middle
    return high


METRICS = {
    "accuracy": accuracy,
    "nll": nll,
    "brier": brier,
    "ece": ece,
    "adaptive_ece": adaptive_ece,
    "mce": mce,
    "classwise_ece": classwise_ece,
    "smooth_ece": smooth_ece,
    "signed_calibration_error": signed_calibration_error,
    "brier_reliability": brier_reliability,
    "brier_refinement": brier_refinement,
    "auroc": auroc,
    "aurc": aurc,
}


_BINNED = ("ece", "adaptive_ece", "mce", "classwise_ece", "brier_reliability", "brier_refinement")


def metric_value(name: str, probs, labels, bins: int = DEFAULT_BINS) -> float:
    """The metric ``name`` of ``METRICS``, passing ``bins`` to the binned ones."""
    return METRICS[name](probs, labels, bins) if name in _BINNED else METRICS[name](probs, labels)


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(R, N) bootstrap resamples as counts: row r counts the N indices ``integers(0, N, (R, N))[r]``.

    The same multinomial law as ``multinomial(N, [1/N] * N)`` per row, drawn
    as uniform indices and counted with one ``bincount`` (a tenth of the time).
    The last few are cached (read-only): every condition of a test part reuses them.
    """
    return _cached_counts(int(n), int(n_resamples), int(seed))


@functools.lru_cache(maxsize=4)
def _cached_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    flat = (draws + (np.arange(n_resamples) * n)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)
    counts.flags.writeable = False
    return counts


def resampled_metrics(probs, labels, counts: np.ndarray, bins: int = DEFAULT_BINS, names=tuple(METRICS),
                      smooth_sigma: Optional[float] = None) -> dict:
    """Each metric in ``names`` on each bootstrap resample given as counts (R, N): (R,) arrays.

    A row of ``counts`` usually sums to N; it may sum to less when the examples
    are the columns of a joint resample of a larger set (xfuse.report.tables resamples
    the languages' test pairs jointly): each row's weights are its counts over
    its total.

    Every metric is a function of count-weighted sums, so R resamples are a
    few (R, N) matrix products. Two quantities are held at their full-sample
    values: the equal-mass bin edges of ``adaptive_ece`` and the bandwidth of
    ``smooth_ece`` (``smooth_sigma`` when given: :func:`smooth_ece_bandwidth` of
    the full sample, found once by a caller that also needs the value). Passing
    the same ``counts`` for two models of the same examples gives paired resamples.
    """
    p1, y = _inputs(probs, labels)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise XfuseError(f"metrics: unknown {unknown[0]!r}; expected some of {', '.join(METRICS)}")
    if counts.ndim != 2 or counts.shape[1] != y.size:
        raise XfuseError(f"counts: expected shape (R, {y.size}), got {counts.shape}")
    weights = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (R, N); a row sums to N, or less (a subset)
    confidence, correct = top_label(p1, y)

    def binned(forecast, outcome, edges):
        membership = np.eye(len(edges) - 1)[bin_index(forecast, edges)]  # (N, K)
        both = weights @ np.hstack([membership * (forecast - outcome)[:, None], membership])  # (R, 2K), one product
        gap, mass = both[:, : membership.shape[1]], both[:, membership.shape[1] :]  # n_b (conf_b - acc_b) / N, n_b / N
        return np.abs(gap).sum(axis=1), np.max(np.where(mass > 0, np.abs(gap) / np.where(mass > 0, mass, 1), 0), axis=1)

    values, ranked = {}, None
    for name in names:
        if name == "accuracy":
            values[name] = weights @ correct
        elif name == "nll":
            values[name] = weights @ -np.log(np.clip(np.where(y == 1, p1, 1.0 - p1), _EPS, 1.0))
        elif name == "brier":
            values[name] = weights @ (p1 - y) ** 2
        elif name in ("ece", "mce") and name not in values:
            values["ece"], values["mce"] = binned(confidence, correct, bin_edges(confidence, bins))
        elif name == "adaptive_ece":
            values[name], _ = binned(confidence, correct, bin_edges(confidence, bins, equal_mass=True))
        elif name == "classwise_ece":
            classwise = [binned(forecast, outcome, bin_edges(forecast, bins))[0] for forecast, outcome in
                         ((1.0 - p1, (y == 0).astype(np.float64)), (p1, (y == 1).astype(np.float64)))]
            values[name] = (classwise[0] + classwise[1]) / 2
        elif name == "smooth_ece":
            sigma = smooth_sigma if smooth_sigma is not None else smooth_ece_bandwidth(confidence, correct)
            mesh = np.linspace(0.0, 1.0, max(200, round(10 / sigma)))
            numerator, density = _kernel_sums(confidence, (counts * (confidence - correct), counts.astype(np.float64)),
                                              sigma, mesh)
            density = density + 1e-4
            values[name] = np.abs(numerator).sum(axis=1) / density.sum(axis=1)
        elif name == "signed_calibration_error":
            values[name] = weights @ (confidence - correct)
        elif name in ("brier_reliability", "brier_refinement") and name not in values:
            membership = np.eye(bins)[bin_index(p1, bin_edges(p1, bins))]  # (N, K), bins of P(y = 1)
            gap, mass = weights @ (membership * (p1 - y)[:, None]), weights @ membership  # (R, K) each
            with np.errstate(invalid="ignore", divide="ignore"):
                values["brier_reliability"] = np.sum(np.where(mass > 0, gap ** 2 / np.where(mass > 0, mass, 1), 0), axis=1)
            values["brier_refinement"] = weights @ (p1 - y) ** 2 - values["brier_reliability"]
        elif name in ("auroc", "aurc"):
            ranked = ranked or _ranked_groups(confidence, correct, weights)  # one ranking for the two
            values[name] = (_auroc_from_groups if name == "auroc" else _aurc_from_groups)(*ranked)
    return {name: values[name] for name in names}


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple:
    """The percentile bootstrap interval ``(low, high)`` of resampled values."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(probs, labels, bins: int = DEFAULT_BINS, n_resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """Percentile bootstrap intervals of every metric in ``METRICS`` (see :func:`resampled_metrics`)."""
    p1, y = _inputs(probs, labels)
    values = resampled_metrics(p1, y, resample_counts(y.size, n_resamples, seed), bins)
    return {name: percentile_interval(values[name], level) for name in METRICS}


def _kernel_sums(points: np.ndarray, weight_sets: tuple, sigma: float, mesh: np.ndarray) -> list:
    """:func:`_kernel_sum` for each row of each weights matrix (R, N) in ``weight_sets``: (R, len(mesh)) each.

    The grid spreading, the reflected convolution and the interpolation at the
    mesh are one linear map of the weights, ``weights @ A`` with ``A`` (N, M)
    from :func:`_kernel_matrix`, built once for all the sets; when ``A`` would
    be too large (tiny ``sigma``), each row goes through :func:`_kernel_sum`.
    """
    size = _grid_size(sigma)
    if size * 2 * mesh.size <= 20_000_000:
        matrix = _kernel_matrix(points, sigma, mesh)
        return [weights @ matrix for weights in weight_sets]
    return [np.stack([_kernel_sum(points, row, sigma, mesh) for row in weights]) for weights in weight_sets]


def _spread(points: np.ndarray, size: int):
    """(N, size) sparse: each point split linearly between its two grid neighbours."""
    from scipy.sparse import csr_matrix

    scaled = points * (size - 1)
    lower = np.clip(scaled.astype(int), 0, size - 2)
    fraction = scaled - lower
    rows = np.arange(points.size)
    return csr_matrix((np.concatenate([1 - fraction, fraction]), (np.concatenate([rows, rows]),
                      np.concatenate([lower, lower + 1]))), shape=(points.size, size))


def _mesh_neighbours(mesh: np.ndarray, size: int) -> tuple:
    position = mesh * (size - 1)
    left = np.clip(position.astype(int), 0, size - 2)
    return left, position - left


def _kernel_matrix(points: np.ndarray, sigma: float, mesh: np.ndarray) -> np.ndarray:
    """(N, M): what a unit weight on each point adds to :func:`_kernel_sum` at each mesh point."""
    size = _grid_size(sigma)
    return np.asarray(_spread(points, size) @ _smoothing_at_mesh(float(sigma), mesh.size))


@functools.lru_cache(maxsize=32)
def _smoothing_at_mesh(sigma: float, mesh_size: int) -> np.ndarray:
    """(size, M): what a unit weight on each grid point adds at each of ``M`` evenly spaced mesh points.

    ``np.convolve(reflected, v, "valid")[size // 2 + s]`` is ``sum_k reflected[k] v[k - size // 2 - s]``
    (``v`` is symmetric), and grid point ``g`` sits in ``reflected`` at ``k = g + size - 1``
    and, reflected, at ``size - 1 - g`` (``g >= 1``) and ``3 size - 3 - g`` (``g <= size - 2``).
    Cached: the bandwidths of :func:`smooth_ece_bandwidth` lie on a dyadic grid and recur.
    """
    size = _grid_size(sigma)
    axis = np.linspace(0.0, 1.0, size)
    kernel = _gaussian(axis, sigma)
    left, right_share = _mesh_neighbours(np.linspace(0.0, 1.0, mesh_size), size)
    columns = np.concatenate([left, left + 1])  # (2M,) smoothed indices the mesh reads
    grid = np.arange(size)[:, None]

    def lookup(k, valid):
        offset = k - size // 2 - columns[None, :]
        inside = valid & (offset >= 0) & (offset < size)
        return np.where(inside, kernel[np.clip(offset, 0, size - 1)], 0.0)

    at_columns = (lookup(grid + size - 1, True) + lookup(size - 1 - grid, grid >= 1)
                  + lookup(3 * size - 3 - grid, grid <= size - 2))  # (size, 2M)
    at_mesh = at_columns[:, :mesh_size] * (1 - right_share) + at_columns[:, mesh_size:] * right_share
    at_mesh.flags.writeable = False
    return at_mesh


def calibration_summary(probs, labels, bins: int = DEFAULT_BINS, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Each metric's value with its bootstrap 95% interval, plus the Brier decomposition and reliability bins."""
    p1, y = _inputs(probs, labels)
    intervals = bootstrap_intervals(p1, y, bins, n_resamples, seed) if n_resamples else {}
    summary = {}
    for name in METRICS:
        value = metric_value(name, p1, y, bins)
        low, high = intervals.get(name, (np.nan, np.nan))
        summary[name] = {"value": value, "low": low, "high": high}
    summary["brier_decomposition"] = brier_decomposition(p1, y, bins)
    confidence, correct = top_label(p1, y)
    table = reliability_bins(confidence, correct, bin_edges(confidence, bins))
    summary["reliability_bins"] = {key: np.nan_to_num(value, nan=-1.0).tolist() for key, value in table.items()}
    return summary
