"""Temperature scaling (Guo et al. 2017): one scalar ``T`` dividing the logits, fitted by NLL.

``softmax(z / T)``: ``T > 1`` softens overconfident predictions, ``T < 1``
sharpens underconfident ones; the argmax, hence accuracy, never changes. ``T``
is fitted by minimising the mean NLL over ``log T`` in [log 0.05, log 20]
(bounded scalar search), and kept at 1 when that does not lower the NLL, so a
fitted scaler never raises the NLL of the data it was fitted on.

In the zero-shot protocol ``T`` is fitted on the English calibration split
only and applied to every language; a per-language "oracle" ``T`` fitted on
that language's own dev set is an upper bound, reported apart.

Usage::

    scaler = TemperatureScaler().fit(dev_logits, dev_labels)
    test_probs = scaler.predict_proba(test_logits)     # (N, 2)
"""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from .errors import XfuseError


def _check_logits(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2 or not np.isfinite(logits).all():
        raise XfuseError(f"logits: expected a finite (N, C>=2) array, got shape {logits.shape}")
    return logits


def scaled_nll(logits, labels, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` at the true labels."""
    logits = _check_logits(logits)
    labels = np.asarray(labels, dtype=np.int64)
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


class TemperatureScaler:
    """Fit/transform calibrator; ``__init__`` only stores its parameters."""

    def __init__(self, bounds=(0.05, 20.0)):
        self.bounds = bounds

    def fit(self, logits, labels) -> "TemperatureScaler":
        logits = _check_logits(logits)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (logits.shape[0],) or labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise XfuseError(f"labels: expected ({logits.shape[0]},) class indices below {logits.shape[1]}")
        low, high = np.log(self.bounds[0]), np.log(self.bounds[1])
        result = minimize_scalar(lambda log_t: scaled_nll(logits, labels, np.exp(log_t)),
                                 bounds=(low, high), method="bounded", options={"xatol": 1e-6})
        fitted = float(np.exp(result.x))
        self.nll_before_ = scaled_nll(logits, labels, 1.0)
        self.temperature_ = fitted if scaled_nll(logits, labels, fitted) <= self.nll_before_ else 1.0
        self.nll_after_ = scaled_nll(logits, labels, self.temperature_)
        return self

    def transform(self, logits) -> np.ndarray:
        """The scaled logits, ``logits / T``."""
        if not hasattr(self, "temperature_"):
            raise XfuseError("TemperatureScaler: call fit before transform")
        return _check_logits(logits) / self.temperature_

    def predict_proba(self, logits) -> np.ndarray:
        return np.exp(log_softmax(self.transform(logits), axis=1))
