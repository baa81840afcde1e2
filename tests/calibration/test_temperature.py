import numpy as np
import pytest

from xfuse.errors import XfuseError
from xfuse.calibration.temperature import TemperatureScaler, scaled_nll


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


def random_logits(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    return rng.normal(0, rng.uniform(0.1, 5), size=(300, 2)), rng.integers(0, 2, 300)


@pytest.mark.parametrize("seed", range(5))
def test_never_raises_the_nll_it_was_fitted_on(seed):
    logits, labels = random_logits(seed)
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


def anti_informative(n: int = 4000, seed: int = 0):
    """Logits that rank the classes the wrong way round: labels drawn from softmax(-z)."""
    logits, labels = synthetic(1.0, n, seed)
    return -logits, labels


def test_diagnostics_report_the_unconstrained_optimum_and_no_bound_hit_on_good_logits():
    logits, labels = synthetic(2.5)
    facts = TemperatureScaler().fit(logits, labels).diagnostics()
    assert facts["unconstrained_temperature"] == pytest.approx(facts["temperature"], rel=1e-3)
    assert facts["optimal_inverse_temperature"] == pytest.approx(0.4, rel=0.05)
    assert not facts["bound_hit"] and not facts["anti_informative"]


def test_anti_informative_logits_are_flagged_and_the_clamp_is_named():
    logits, labels = anti_informative()
    scaler = TemperatureScaler().fit(logits, labels)
    facts = scaler.diagnostics()
    assert facts["anti_informative"] and facts["optimal_inverse_temperature"] < 0
    assert facts["unconstrained_temperature"] is None
    assert facts["bound_hit"] and scaler.temperature_ == pytest.approx(20.0, rel=1e-3)  # the clamp, now named


def test_optimal_inverse_temperature_is_the_nll_minimum_over_all_reals():
    from xfuse.calibration.temperature import nll_at_inverse_temperature, optimal_inverse_temperature

    logits, labels = anti_informative(n=500, seed=3)
    beta = optimal_inverse_temperature(logits, labels)
    grid = np.linspace(-5, 5, 2001)
    best = grid[np.argmin([nll_at_inverse_temperature(logits, labels, b) for b in grid])]
    assert beta == pytest.approx(best, abs=0.01)


@pytest.mark.parametrize("slope, bias", [(0.5, 0.0), (2.0, -1.0), (1.0, 0.8)])
def test_bias_scaler_recovers_a_known_slope_and_bias(slope, bias):
    from xfuse.calibration.temperature import BiasScaler

    rng = np.random.default_rng(11)
    difference = rng.normal(0, 2, 40_000)
    labels = (rng.random(difference.size) < 1 / (1 + np.exp(-(slope * difference + bias)))).astype(int)
    logits = np.stack([np.zeros_like(difference), difference], axis=1)
    scaler = BiasScaler().fit(logits, labels)
    assert scaler.slope_ == pytest.approx(slope, rel=0.05) and scaler.bias_ == pytest.approx(bias, abs=0.05)
    probs = scaler.predict_proba(logits)
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-(scaler.slope_ * difference + scaler.bias_))), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_bias_scaler_never_raises_the_nll_it_was_fitted_on(seed):
    from xfuse.calibration.temperature import BiasScaler

    scaler = BiasScaler().fit(*random_logits(seed))
    assert scaler.nll_after_ <= scaler.nll_before_ + 1e-12
    assert BiasScaler().fit(*anti_informative(n=2000, seed=seed)).diagnostics()["anti_informative"]
