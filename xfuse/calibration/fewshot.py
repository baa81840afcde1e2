"""Few-shot temperature scaling: a temperature fitted on k labelled examples of the target language's own dev set.

Between the zero-shot temperature (fitted on English dev) and the per-language
oracle (fitted on all of the language's dev set) lies the question a user
with a few target-language labels asks: how many does it take? For each ``k``
and each of ``draws`` draws (seeded), ``k`` examples of ``dev-<lang>`` are
drawn without replacement, stratified by class (class ``c`` gets
``round(k * share_c)`` of them, at least one, so each draw holds both
classes), a :class:`~xfuse.calibration.temperature.TemperatureScaler` is fitted on them and
applied to ``test-<lang>``. Each metric is computed on the test set for every
draw and summarised over draws by its mean, standard deviation, median and
2.5 and 97.5 percentiles; the number of draws whose temperature sits on a
bound of [0.05, 20] is counted (with 10 labels, a few do). Temperature scaling keeps the argmax, so accuracy is that of
the uncalibrated model and is not repeated. Nothing is retrained: only saved
logits are read (Ahuja et al. 2022 call the full-dev version "self-TS").

Usage::

    result = few_shot_ts(dev_logits, dev_labels, test_logits, test_labels, ks=(10, 50, 100, 500), draws=100, seed=0)
    print(result[50]["ece"]["mean"], result[50]["temperature"]["mean"])
"""

from typing import Sequence

import numpy as np
from scipy.special import softmax

from xfuse.calibration.metrics import DEFAULT_BINS, metric_value
from xfuse.errors import XfuseError
from xfuse.calibration.temperature import TemperatureScaler

DEFAULT_KS = (10, 50, 100, 500)
DEFAULT_METRICS = ("ece", "nll", "brier")


def stratified_draws(labels, k: int, draws: int, seed: int) -> list:
    """``draws`` index arrays of ``k`` examples each, without replacement, stratified by class (module docstring)."""
    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise XfuseError("few-shot temperature scaling: the dev set holds one class only")
    if not classes.size <= k <= labels.size:
        raise XfuseError(f"few-shot k: expected an integer in {classes.size}..{labels.size}, got {k}")
    wanted = np.maximum(1, np.round(k * counts / labels.size).astype(int))
    wanted[np.argmax(wanted)] += k - wanted.sum()  # rounding leftovers go to the largest class
    if (wanted > counts).any() or (wanted < 1).any():
        raise XfuseError(f"few-shot k={k}: cannot draw {wanted.tolist()} of classes holding {counts.tolist()}")
    members = [np.flatnonzero(labels == value) for value in classes]
    rng = np.random.default_rng(seed)
    return [np.sort(np.concatenate([rng.choice(pool, size=size, replace=False) for pool, size in zip(members, wanted)]))
            for _ in range(draws)]


def _summary(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "median": float(np.median(values)), "low": float(low), "high": float(high), "draws": int(values.size)}


def few_shot_ts(dev_logits, dev_labels, test_logits, test_labels, ks: Sequence[int] = DEFAULT_KS, draws: int = 100,
                seed: int = 0, metrics: Sequence[str] = DEFAULT_METRICS, bins: int = DEFAULT_BINS) -> dict:
    """For each k: every metric's and the temperature's summary over draws, plus the draws' temperatures."""
    dev_logits, test_logits = np.asarray(dev_logits, np.float64), np.asarray(test_logits, np.float64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    if draws < 1:
        raise XfuseError(f"few-shot draws: expected an integer >= 1, got {draws}")
    result = {}
    for k in ks:
        temperatures, values, bound_hits = [], {name: [] for name in metrics}, 0
        for index in stratified_draws(dev_labels, int(k), draws, seed + int(k)):
            scaler = TemperatureScaler().fit(dev_logits[index], np.asarray(dev_labels)[index])
            temperatures.append(scaler.temperature_)
            bound_hits += scaler.bound_hit_
            probs = softmax(test_logits / scaler.temperature_, axis=1)
            for name in metrics:
                values[name].append(metric_value(name, probs, test_labels, bins))
        result[int(k)] = {"temperature": _summary(temperatures), "temperatures": temperatures, "bound_hits": bound_hits,
                          **{name: _summary(values[name]) for name in metrics}}
    return result
