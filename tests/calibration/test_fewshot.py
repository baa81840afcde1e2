"""Few-shot temperature scaling: stratified, reproducible draws; each fit equals a direct fit on the same examples."""

import numpy as np
import pytest
from scipy.special import softmax

from xfuse.calibration.metrics import ece
from xfuse.errors import XfuseError
from xfuse.calibration.fewshot import few_shot_ts, stratified_draws
from xfuse.calibration.temperature import TemperatureScaler


def logits_and_labels(n, temperature, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(n, 2))
    labels = (rng.random(n) < softmax(z, axis=1)[:, 1]).astype(int)
    return z * temperature, labels


def test_draws_are_stratified_without_replacement_and_reproducible():
    labels = np.array([0] * 700 + [1] * 300)
    draws = stratified_draws(labels, 10, 50, seed=3)
    assert len(draws) == 50
    for index in draws:
        assert index.size == 10 and np.unique(index).size == 10
        assert (labels[index] == 1).sum() == 3 and (labels[index] == 0).sum() == 7
    assert all(np.array_equal(a, b) for a, b in zip(draws, stratified_draws(labels, 10, 50, seed=3)))
    assert not all(np.array_equal(a, b) for a, b in zip(draws, stratified_draws(labels, 10, 50, seed=4)))
    rare = np.array([0] * 995 + [1] * 5)
    assert all((rare[index] == 1).sum() == 1 for index in stratified_draws(rare, 10, 20, seed=0))  # at least one


def test_a_few_shot_fit_equals_a_direct_fit_on_the_same_examples():
    dev_logits, dev_labels = logits_and_labels(2000, 2.0, 0)
    test_logits, test_labels = logits_and_labels(1500, 2.0, 1)
    result = few_shot_ts(dev_logits, dev_labels, test_logits, test_labels, ks=(10, 100), draws=12, seed=7)
    for k in (10, 100):
        direct_t, direct_ece = [], []
        for index in stratified_draws(dev_labels, k, 12, seed=7 + k):
            scaler = TemperatureScaler().fit(dev_logits[index], dev_labels[index])
            direct_t.append(scaler.temperature_)
            direct_ece.append(ece(scaler.predict_proba(test_logits), test_labels))
        assert result[k]["temperatures"] == direct_t
        assert result[k]["ece"]["mean"] == pytest.approx(np.mean(direct_ece), rel=1e-12)
        assert result[k]["temperature"]["draws"] == 12
    # more labels, closer to the right temperature (2.0) and less spread
    assert result[100]["temperature"]["std"] < result[10]["temperature"]["std"]
    assert abs(result[100]["temperature"]["mean"] - 2.0) < 0.5


def test_impossible_k_is_refused():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(XfuseError, match=r"few-shot k: expected an integer in 2\.\.4, got 5"):
        stratified_draws(labels, 5, 1, 0)
    with pytest.raises(XfuseError, match="one class only"):
        stratified_draws(np.zeros(10, dtype=int), 3, 1, 0)
