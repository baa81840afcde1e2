"""Post-hoc calibrators fitted by NLL: temperature scaling, and temperature plus bias on the logit difference.

Temperature scaling (Guo et al. 2017): ``softmax(z / T)``. ``T > 1`` softens
overconfident predictions, ``T < 1`` sharpens underconfident ones; the
argmax, hence accuracy, never changes. ``T`` is fitted by minimising the mean
NLL over ``log T`` in [log 0.05, log 20] (bounded scalar search), and kept at
1 when that does not lower the NLL, so a fitted scaler never raises the NLL
of the data it was fitted on. Every fit also reports what the bounds hide:
the NLL-optimal *inverse* temperature ``beta*`` over [-100, 100], a range
that holds every useful optimum (the NLL of ``softmax(beta z)`` is convex in
``beta``, so a bounded search finds it; an optimum at the edge means logits
that separate the data perfectly or are almost constant), whether the fitted ``T`` sits on a
bound, and whether ``beta* <= 0``: then the logits rank the classes the wrong
way round on that data (*anti-informative*), no temperature can calibrate
them, and the fitted result must not be presented as a calibration.

Temperature plus bias (:class:`BiasScaler`, Platt scaling on the logit
difference, two classes): ``P(y = 1) = sigmoid(a (z_1 - z_0) + b)``, ``(a, b)``
fitted by logistic regression without a penalty (scikit-learn's, ``C=inf``,
an NLL fit).
``a = 1 / T``; ``b`` moves the decision threshold, so unlike temperature
scaling it can change predictions, and it can follow a shift in how often a
transferred model predicts each class. ``(1, 0)`` is the identity, so the fit
never raises the NLL it was fitted on (the identity is kept otherwise);
``a <= 0`` is anti-informative as above.

In the zero-shot protocol ``T`` is fitted on the English calibration split
only and applied to every language; a per-language "oracle" ``T`` fitted on
that language's own dev set is an upper bound, reported apart.

Usage::

    scaler = TemperatureScaler().fit(dev_logits, dev_labels)
    test_probs = scaler.predict_proba(test_logits)     # (N, 2)
    print(scaler.diagnostics())                        # temperature, unconstrained optimum, bound hit, ...
    bias = BiasScaler().fit(dev_logits, dev_labels)    # a (z1 - z0) + b
"""

import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

from xfuse.errors import XfuseError


def _check_logits(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2 or not np.isfinite(logits).all():
        raise XfuseError(f"logits: expected a finite (N, C>=2) array, got shape {logits.shape}")
    return logits


def scaled_nll(logits, labels, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` at the true labels."""
    return nll_at_inverse_temperature(logits, labels, 1.0 / temperature)


def nll_at_inverse_temperature(logits, labels, beta: float) -> float:
    """Mean NLL of ``softmax(beta * logits)``; any real ``beta`` (0 is the uniform prediction)."""
    logits = _check_logits(logits)
    labels = np.asarray(labels, dtype=np.int64)
    return float(-log_softmax(logits * beta, axis=1)[np.arange(len(labels)), labels].mean())


def optimal_inverse_temperature(logits, labels, limit: float = 100.0) -> float:
    """The NLL-optimal ``beta`` of ``softmax(beta * logits)`` over [-limit, limit] (convex, so a bounded search)."""
    result = minimize_scalar(lambda beta: nll_at_inverse_temperature(logits, labels, beta), bounds=(-limit, limit),
                             method="bounded", options={"xatol": 1e-7})
    return float(result.x)


def _check_labels(logits: np.ndarray, labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (logits.shape[0],) or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise XfuseError(f"labels: expected ({logits.shape[0]},) class indices below {logits.shape[1]}")
    return labels


class TemperatureScaler:
    """Fit/transform calibrator; ``__init__`` only stores its parameters."""

    def __init__(self, bounds=(0.05, 20.0)):
        self.bounds = bounds

    def fit(self, logits, labels) -> "TemperatureScaler":
        logits = _check_logits(logits)
        labels = _check_labels(logits, labels)
        low, high = np.log(self.bounds[0]), np.log(self.bounds[1])
        result = minimize_scalar(lambda log_t: scaled_nll(logits, labels, np.exp(log_t)),
                                 bounds=(low, high), method="bounded", options={"xatol": 1e-6})
        fitted = float(np.exp(result.x))
        self.nll_before_ = scaled_nll(logits, labels, 1.0)
        self.temperature_ = fitted if scaled_nll(logits, labels, fitted) <= self.nll_before_ else 1.0
        self.nll_after_ = scaled_nll(logits, labels, self.temperature_)
        self.optimal_inverse_temperature_ = optimal_inverse_temperature(logits, labels)
        self.anti_informative_ = self.optimal_inverse_temperature_ <= 0
        self.bound_hit_ = bool(min(abs(np.log(fitted) - low), abs(np.log(fitted) - high)) < 1e-3)
        return self

    def diagnostics(self) -> dict:
        """The fit in numbers: ``T``, the unconstrained optimum, whether a bound was hit, anti-informative logits."""
        beta = self.optimal_inverse_temperature_
        return {"temperature": self.temperature_, "optimal_inverse_temperature": beta,
                "unconstrained_temperature": 1.0 / beta if beta > 0 else None,
                "bound_hit": self.bound_hit_, "bounds": list(self.bounds), "anti_informative": self.anti_informative_,
                "nll_before": self.nll_before_, "nll_after": self.nll_after_}

    def transform(self, logits) -> np.ndarray:
        """The scaled logits, ``logits / T``."""
        if not hasattr(self, "temperature_"):
            raise XfuseError("TemperatureScaler: call fit before transform")
        return _check_logits(logits) / self.temperature_

    def predict_proba(self, logits) -> np.ndarray:
        return np.exp(log_softmax(self.transform(logits), axis=1))


def logit_difference_probabilities(logits, slope: float, bias: float) -> np.ndarray:
    """(N, 2) probabilities ``P(y = 1) = sigmoid(slope (z1 - z0) + bias)`` of two-class logits.

    (1, 0) is the plain softmax, (1 / T, 0) temperature scaling, the fitted
    (a, b) temperature plus bias.
    """
    logits = _check_logits(logits)
    positive = expit(slope * (logits[:, 1] - logits[:, 0]) + bias)
    return np.stack([1.0 - positive, positive], axis=1)


class BiasScaler:
    """Temperature plus bias on the logit difference (module docstring); two classes; ``__init__`` stores nothing."""

    def fit(self, logits, labels) -> "BiasScaler":
        logits = _check_logits(logits)
        if logits.shape[1] != 2:
            raise XfuseError(f"BiasScaler: expected two-class logits (N, 2), got shape {logits.shape}")
        labels = _check_labels(logits, labels)
        from sklearn.linear_model import LogisticRegression

        difference = (logits[:, 1] - logits[:, 0])[:, None]
        self.nll_before_ = self._nll(difference[:, 0], labels, 1.0, 0.0)
        if np.unique(labels).size < 2:  # one class only: no finite maximum-likelihood fit; keep the identity
            self.slope_, self.bias_ = 1.0, 0.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs convergence notes on separable data; the NLL guard follows
                model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(difference, labels)
            self.slope_, self.bias_ = float(model.coef_[0, 0]), float(model.intercept_[0])
            if self._nll(difference[:, 0], labels, self.slope_, self.bias_) > self.nll_before_:
                self.slope_, self.bias_ = 1.0, 0.0
        self.nll_after_ = self._nll(difference[:, 0], labels, self.slope_, self.bias_)
        self.anti_informative_ = self.slope_ <= 0
        return self

    @staticmethod
    def _nll(difference, labels, slope, bias) -> float:
        margin = (slope * difference + bias) * np.where(labels == 1, 1.0, -1.0)
        return float(np.mean(np.logaddexp(0.0, -margin)))

    def predict_proba(self, logits) -> np.ndarray:
        if not hasattr(self, "slope_"):
            raise XfuseError("BiasScaler: call fit before predict_proba")
        return logit_difference_probabilities(logits, self.slope_, self.bias_)

    def diagnostics(self) -> dict:
        return {"slope": self.slope_, "bias": self.bias_, "temperature": 1.0 / self.slope_ if self.slope_ > 0 else None,
                "anti_informative": self.anti_informative_, "nll_before": self.nll_before_,
                "nll_after": self.nll_after_}
