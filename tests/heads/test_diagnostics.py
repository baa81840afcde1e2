"""Run diagnostics: stopping and convergence, learned against the prior, prediction profiles, one tie rule."""

import numpy as np
import pytest
from scipy.special import softmax

from xfuse.calibration.metrics import accuracy, predicted_class, top_label
from xfuse.heads.diagnostics import learned, prediction_profile, stopping, wilson_interval


def curve(losses):
    return [{"epoch": k + 1, "dev_en_loss": loss} for k, loss in enumerate(losses)]


def test_stopping_by_patience_is_converged_and_names_the_best_epoch():
    facts = stopping(curve([0.69, 0.65, 0.66, 0.67]), max_epochs=10, patience=2)
    assert facts["reason"] == "patience" and facts["epochs"] == 4 and facts["best_epoch"] == 2 and facts["converged"]


def test_a_run_still_improving_at_the_cap_has_not_converged():
    still = stopping(curve([0.69, 0.66, 0.64, 0.62, 0.60, 0.58]), max_epochs=6, patience=2, window=3, tolerance=1e-3)
    assert still["reason"] == "max_epochs" and not still["converged"]
    assert still["last_improvement"] == pytest.approx(0.64 - 0.58)
    flat = stopping(curve([0.69, 0.60, 0.5995, 0.5996, 0.5994, 0.5997]), max_epochs=6, patience=10, window=3)
    assert flat["reason"] == "max_epochs" and flat["converged"]


def test_patience_running_out_on_the_caps_epoch_is_patience():
    # best at epoch 4 of 6, patience 2: the loop's rule (6 - 4 >= 2) stops it at epoch 6, the cap's epoch too
    facts = stopping(curve([0.69, 0.66, 0.64, 0.62, 0.63, 0.65]), max_epochs=6, patience=2)
    assert facts["reason"] == "patience" and facts["converged"] and facts["epochs"] == 6
    within = stopping(curve([0.69, 0.66, 0.64, 0.63, 0.62, 0.63]), max_epochs=6, patience=2)  # best at 5: 6 - 5 < 2
    assert within["reason"] == "max_epochs"
    early = stopping(curve([0.69, 0.66, 0.64, 0.62, 0.63, 0.65]), max_epochs=6, patience=2, min_epochs=20)
    assert early["reason"] == "max_epochs"  # patience may not stop a run before min_epochs: the cap did


def test_wilson_interval_against_a_hand_computed_case():
    # 80 of 100, z = 1.959964: centre (0.8 + z^2/200) / (1 + z^2/100), half-width as in Wilson (1927)
    low, high = wilson_interval(80, 100)
    assert low == pytest.approx(0.7112, abs=2e-4) and high == pytest.approx(0.8666, abs=2e-4)


def test_logits_without_signal_have_not_learned_and_informative_ones_have():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.45).astype(int)
    prior_logits = np.tile([0.0, np.log(0.45 / 0.55)], (2000, 1)) + rng.normal(0, 0.01, (2000, 2))
    facts = learned(prior_logits, labels, train_base_rate=0.45)
    assert not facts["learned"] and not facts["beats_majority_rate"]
    assert facts["loss"] == pytest.approx(facts["prior_loss"], abs=0.01)
    signal = rng.normal(0, 2, 2000)
    informative_labels = (rng.random(2000) < 1 / (1 + np.exp(-signal))).astype(int)
    facts = learned(np.stack([np.zeros(2000), signal], 1), informative_labels, train_base_rate=0.5)
    assert facts["learned"] and facts["loss_minus_prior_interval"][1] < 0 and facts["accuracy_interval"][0] > 0.6


def test_one_tie_rule_everywhere():
    probs = np.array([[0.5, 0.5], [0.3, 0.7], [0.8, 0.2]])
    labels = np.array([0, 1, 0])
    logits = np.log(probs)
    assert predicted_class(probs[:, 1]).tolist() == logits.argmax(1).tolist() == [0, 1, 0]
    confidence, correct = top_label(probs, labels)
    assert correct.tolist() == [1.0, 1.0, 1.0] and accuracy(probs, labels) == 1.0
    profile = prediction_profile(probs, labels)
    assert profile["positive_rate"] == pytest.approx(1 / 3) and profile["accuracy"] == 1.0
    assert profile["mean_confidence"] == pytest.approx((0.5 + 0.7 + 0.8) / 3)
    assert profile["signed_calibration_error"] == pytest.approx((0.5 + 0.7 + 0.8) / 3 - 1.0)


def test_signed_calibration_error_is_positive_for_overconfident_predictions():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, 5000)
    labels = (rng.random(5000) < 1 / (1 + np.exp(-z))).astype(int)
    overconfident = softmax(np.stack([np.zeros(5000), 3 * z], 1), axis=1)
    assert prediction_profile(overconfident, labels)["signed_calibration_error"] > 0.05
