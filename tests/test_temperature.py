import numpy as np
import pytest

from xfuse.errors import XfuseError
from xfuse.temperature import TemperatureScaler, scaled_nll


def synthetic(temperature: float, n: int = 40_000, seed: int = 0):
    """Labels drawn from softmax(z), logits reported as z * temperature: the right T is ``temperature``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(n, 2))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = (rng.random(n) < p[:, 1]).astype(int)
    return z * temperature, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_recovers_a_known_temperature(temperature):
    logits, labels = synthetic(temperature)
    scaler = TemperatureScaler().fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(temperature, rel=0.05)


@pytest.mark.parametrize("seed", range(5))
def test_never_raises_the_nll_it_was_fitted_on(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, rng.uniform(0.1, 5), size=(300, 2))
    labels = rng.integers(0, 2, 300)
    scaler = TemperatureScaler().fit(logits, labels)
    assert scaler.nll_after_ <= scaler.nll_before_ + 1e-12
    assert scaled_nll(scaler.transform(logits), labels, 1.0) == pytest.approx(scaler.nll_after_)


def test_keeps_the_argmax_and_gives_probabilities():
    logits, labels = synthetic(2.0, n=500)
    scaler = TemperatureScaler().fit(logits, labels)
    probs = scaler.predict_proba(logits)
    assert np.allclose(probs.sum(1), 1) and (probs.argmax(1) == logits.argmax(1)).all()


def test_init_only_stores_and_errors_are_clear():
    scaler = TemperatureScaler(bounds=(0.1, 10))
    assert vars(scaler) == {"bounds": (0.1, 10)}
    with pytest.raises(XfuseError, match="call fit before transform"):
        scaler.transform(np.zeros((2, 2)))
    with pytest.raises(XfuseError, match=r"logits: expected a finite \(N, C>=2\) array, got shape \(3,\)"):
        scaler.fit(np.zeros(3), [0, 1, 0])
    with pytest.raises(XfuseError, match=r"labels: expected \(2,\) class indices below 2"):
        scaler.fit(np.zeros((2, 2)), [0, 2])
