"""What a training run did: why it stopped, whether it converged, whether it learned, how its predictions lean.

A head that never left the prior (predicting the training base rate) is well
calibrated by construction, so calibration claims must leave such runs out;
these functions say which runs those are, from the run's own curve and its
English dev predictions (never test).

- :func:`stopping`: ``reason`` is ``"patience"`` (``patience`` epochs without a
  lower dev-en loss from ``min_epochs`` on, also when that happens on the
  cap's epoch) or
  ``"max_epochs"`` (the cap, still within patience of its best epoch). A run that stopped at the
  cap is ``converged`` only if its best dev-en loss over the last
  ``window`` epochs improved on the best before them by at most ``tolerance``;
  a run stopped by patience is converged by definition of the rule.
- :func:`learned`: the run beats the prior on English dev when both hold:
  its dev-en loss is below the loss of predicting the training base rate
  ``pi`` for every pair, ``L_prior = -mean(y log pi + (1 - y) log(1 - pi))``,
  with the upper end of a 95% bootstrap interval of the paired per-example
  difference below 0; and the lower end of a 95% Wilson interval of its
  dev-en accuracy lies above the dev-en majority rate.
- :func:`prediction_profile`: the rate of predicted positives, the mean
  top-label confidence, the accuracy and the signed calibration error
  ``mean confidence - accuracy`` (positive: overconfident).

One tie rule everywhere (:func:`predicted_class`): class 1 only when
``P(y = 1) > 0.5``, as ``argmax`` of two equal logits picks class 0.

Usage::

    facts = learned(dev_logits, dev_labels, train_base_rate=0.445)
    print(facts["learned"], facts["loss"], facts["prior_loss"])
"""

import numpy as np
from scipy.special import log_softmax
from scipy.stats import norm

from xfuse.calibration.metrics import check_probs, predicted_class, resample_counts, top_label


def stopping(curve: list, max_epochs: int, patience: int, window: int = 3, tolerance: float = 1e-3,
             min_epochs: int = 0) -> dict:
    """Why training ended and whether it had converged (module docstring); ``curve`` as in ``curve.json``."""
    losses = [epoch["dev_en_loss"] for epoch in curve]
    best_epoch = int(np.argmin(losses)) + 1
    # at the cap, patience may have run out on the same epoch (from min_epochs on, as the training loop's rule)
    stopped_by_patience = len(curve) < max_epochs or (len(curve) >= min_epochs
                                                       and len(curve) - best_epoch >= patience)
    reason = "patience" if stopped_by_patience else "max_epochs"
    if reason == "patience" or len(losses) <= window:
        improvement = None
        converged = reason == "patience"
    else:
        improvement = float(min(losses[:-window]) - min(losses[-window:]))
        converged = improvement <= tolerance
    return {"reason": reason, "epochs": len(curve), "best_epoch": best_epoch, "converged": bool(converged),
            "last_improvement": improvement, "window": window, "tolerance": tolerance}


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple:
    """The Wilson score interval of a binomial proportion."""
    z = norm.ppf(0.5 + level / 2)
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(centre - half), float(centre + half)


def learned(dev_logits, dev_labels, train_base_rate: float, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Whether a run beats the prior on English dev, with the figures it was decided on (module docstring)."""
    logits = np.asarray(dev_logits, dtype=np.float64)
    labels = np.asarray(dev_labels, dtype=np.int64)
    per_example = -log_softmax(logits, axis=1)[np.arange(labels.size), labels]
    pi = float(np.clip(train_base_rate, 1e-12, 1 - 1e-12))
    prior = np.where(labels == 1, -np.log(pi), -np.log(1 - pi))
    difference = per_example - prior  # < 0 where the run beats the prior
    counts = resample_counts(labels.size, n_resamples, seed)
    resampled = counts @ difference / labels.size
    low, high = np.percentile(resampled, [2.5, 97.5])
    correct = int((predicted_class(np.exp(log_softmax(logits, axis=1))[:, 1]) == labels).sum())
    accuracy_low, accuracy_high = wilson_interval(correct, labels.size)
    majority = float(max(labels.mean(), 1 - labels.mean()))
    beats_loss, beats_majority = bool(high < 0), bool(accuracy_low > majority)
    return {"learned": beats_loss and beats_majority, "loss": float(per_example.mean()), "prior_loss": float(prior.mean()),
            "loss_minus_prior": float(difference.mean()), "loss_minus_prior_interval": [float(low), float(high)],
            "accuracy": correct / labels.size, "accuracy_interval": [accuracy_low, accuracy_high],
            "majority_rate": majority, "train_base_rate": float(train_base_rate), "beats_prior_loss": beats_loss,
            "beats_majority_rate": beats_majority}


def prediction_profile(probs, labels) -> dict:
    """Predicted positive rate, mean top-label confidence, accuracy and signed calibration error."""
    confidence, correct = top_label(probs, labels)
    accuracy = float(correct.mean())
    return {"positive_rate": float(predicted_class(check_probs(probs)).mean()),
            "mean_confidence": float(confidence.mean()), "accuracy": accuracy,
            "signed_calibration_error": float(confidence.mean() - accuracy)}
