"""Calibration metrics against independent references (scikit-learn, netcal, relplot) and hand-computed cases."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from xfuse.calibration import metrics as cal
from xfuse.errors import XfuseError


@pytest.fixture(scope="module")
def sample():
    """Overconfident predictions: labels drawn from a tempered version of the forecast."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, size=3000)
    p1 = 1 / (1 + np.exp(-logits))
    labels = (rng.random(3000) < 1 / (1 + np.exp(-logits / 2))).astype(int)
    return p1, labels


def test_hand_computed_case():
    p1 = np.array([0.9, 0.8, 0.3, 0.6])
    y = np.array([1, 0, 0, 0])
    # top-label confidences 0.9, 0.8, 0.7, 0.6; correct 1, 0, 1, 0
    assert cal.accuracy(p1, y) == 0.5
    assert cal.brier(p1, y) == pytest.approx((0.01 + 0.64 + 0.09 + 0.36) / 4)
    assert cal.nll(p1, y) == pytest.approx(-(np.log(0.9) + np.log(0.2) + np.log(0.7) + np.log(0.4)) / 4)
    # 2 bins [0, .5) [.5, 1]: all four in the upper bin, confidence 0.75, accuracy 0.5
    assert cal.ece(p1, y, bins=2) == pytest.approx(0.25)
    # 10 bins: one example per bin 6, 7, 8, 9: |0.6-0| + |0.7-1| + |0.8-0| + |0.9-1| over 4
    assert cal.ece(p1, y, bins=10) == pytest.approx((0.6 + 0.3 + 0.8 + 0.1) / 4)
    assert cal.mce(p1, y, bins=10) == pytest.approx(0.8)


def test_top_label_is_max_p_not_p1():
    """The binary trap: a confident, right prediction of class 0 is calibrated."""
    p1 = np.full(1000, 0.1)
    y = np.zeros(1000, dtype=int)
    y[:100] = 1  # P(y=1) really is 0.1, so the 0.9-confident prediction of class 0 is right 90% of the time
    assert cal.ece(p1, y) == pytest.approx(0.0, abs=1e-12)
    confidence, correct = cal.top_label(p1, y)
    assert confidence[0] == pytest.approx(0.9) and correct.mean() == pytest.approx(0.9)


def test_two_column_input_equals_one_column(sample):
    p1, y = sample
    both = np.stack([1 - p1, p1], axis=1)
    for name, metric in cal.METRICS.items():
        if name != "smooth_ece":
            assert metric(both, y) == pytest.approx(metric(p1, y)), name


def test_against_scikit_learn(sample):
    p1, y = sample
    assert cal.brier(p1, y) == pytest.approx(brier_score_loss(y, p1), abs=1e-12)
    assert cal.nll(p1, y) == pytest.approx(log_loss(y, p1), abs=1e-9)
    fraction, mean_forecast = calibration_curve(y, p1, n_bins=15, strategy="uniform")
    table = cal.reliability_bins(p1, y.astype(float), cal.bin_edges(p1, 15))
    filled = table["count"] > 0
    np.testing.assert_allclose(table["accuracy"][filled], fraction, atol=1e-12)
    np.testing.assert_allclose(table["confidence"][filled], mean_forecast, atol=1e-12)


@pytest.fixture(scope="module")
def asymmetric():
    """Overconfident on class 1, underconfident on class 0: top-label and class-1 ECE differ."""
    rng = np.random.default_rng(11)
    p1 = rng.random(4000)
    truth = np.where(p1 > 0.5, 0.5 + (p1 - 0.5) * 0.6, p1 * 0.6)
    return p1, (rng.random(4000) < truth).astype(int)


@pytest.mark.parametrize("bins", [10, 15])
@pytest.mark.parametrize("data", ["sample", "asymmetric"])
def test_against_netcal(request, data, bins):
    from netcal.metrics import ECE, MCE

    p1, y = request.getfixturevalue(data)
    # netcal's binary input, one or two columns, is P(y=1) against 1[y=1] (the binary trap).
    # Given the top-label confidence and whether the prediction is right, it computes top-label ECE.
    confidence, correct = cal.top_label(p1, y)
    assert cal.ece(p1, y, bins) == pytest.approx(ECE(bins=bins).measure(confidence, correct), abs=1e-6)
    assert cal.mce(p1, y, bins) == pytest.approx(MCE(bins=bins).measure(confidence, correct), abs=1e-6)
    assert cal.adaptive_ece(p1, y, bins) == pytest.approx(
        ECE(bins=bins, equal_intervals=False).measure(confidence, correct), abs=1e-6)
    if data == "asymmetric":
        trap = ECE(bins=bins).measure(np.stack([1 - p1, p1], axis=1), y)
        assert abs(trap - cal.ece(p1, y, bins)) > 0.01


def test_smooth_ece_against_relplot(sample):
    import relplot

    confidence, correct = cal.top_label(*sample)
    assert cal.smooth_ece(*sample) == pytest.approx(relplot.smECE(confidence, correct), abs=1e-4)
    for sigma in (0.02, 0.05, 0.2):
        assert cal.smooth_ece_at(confidence, correct, sigma) == pytest.approx(
            relplot.smECE_sigma(confidence, correct, sigma), abs=1e-4)


def test_perfectly_calibrated_predictions_have_near_zero_error():
    rng = np.random.default_rng(0)
    p1 = rng.random(200_000)
    y = (rng.random(200_000) < p1).astype(int)
    assert cal.ece(p1, y) < 0.005
    assert cal.adaptive_ece(p1, y) < 0.005
    assert cal.classwise_ece(p1, y) < 0.005
    assert cal.brier_decomposition(p1, y)["reliability"] < 1e-4


def test_brier_decomposition_adds_up_with_constant_forecasts_per_bin():
    rng = np.random.default_rng(1)
    p1 = rng.choice([0.05, 0.35, 0.62, 0.97], size=5000)  # one forecast value per 15-bin
    y = (rng.random(5000) < np.clip(p1 + 0.1, 0, 1)).astype(int)
    parts = cal.brier_decomposition(p1, y, bins=15)
    assert parts["reliability"] - parts["resolution"] + parts["uncertainty"] == pytest.approx(cal.brier(p1, y), abs=1e-12)


@pytest.mark.parametrize("rounding", [None, 2])  # 2: many tied confidences, for AUROC's and AURC's ties
def test_vectorised_bootstrap_equals_metrics_of_explicit_resamples(rounding):
    rng = np.random.default_rng(5)
    p1 = rng.random(400) if rounding is None else np.round(rng.random(400), rounding)
    y = (rng.random(400) < p1 ** 1.5).astype(int)
    resamples, seed = 60, 4
    intervals = cal.bootstrap_intervals(p1, y, bins=10, n_resamples=resamples, seed=seed)
    resampled = cal.resampled_metrics(p1, y, cal.resample_counts(400, resamples, seed), 10)
    draws = np.random.default_rng(seed).integers(0, 400, size=(resamples, 400))  # explicit resamples of indices
    confidence, correct = cal.top_label(p1, y)
    adaptive_edges = cal.bin_edges(confidence, 10, equal_mass=True)
    sigma = cal.smooth_ece_bandwidth(confidence, correct)
    direct = {name: [] for name in cal.METRICS}
    for pick in draws:
        q, t = p1[pick], y[pick]
        for name, metric in cal.METRICS.items():
            if name == "adaptive_ece":
                gaps, sizes = cal._binned_gaps(*cal.top_label(q, t), adaptive_edges)
                direct[name].append(np.sum(gaps * sizes) / t.size)
            elif name == "smooth_ece":
                direct[name].append(cal.smooth_ece_at(*cal.top_label(q, t), sigma))
            elif name in cal._BINNED:
                direct[name].append(metric(q, t, 10))
            else:
                direct[name].append(metric(q, t))
    for name, values in direct.items():
        expected = np.percentile(values, [2.5, 97.5])
        np.testing.assert_allclose(intervals[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(resampled[name], values, rtol=1e-9, atol=1e-12, err_msg=name)  # every resample


@pytest.mark.parametrize("probs, labels, message", [
    (np.array([[0.2, 0.3]]), [1], r"probs: expected \(N, 2\) rows summing to 1"),
    (np.array([1.2]), [1], r"probs: expected values in \[0, 1\]"),
    (np.array([0.2, 0.3]), [1], r"labels: expected shape \(2,\), got \(1,\)"),
    (np.array([0.2, 0.3]), [1, 2], r"labels: expected 0 or 1, got \[2\]"),
])
def test_validation_names_expected_and_received(probs, labels, message):
    with pytest.raises(XfuseError, match=message):
        cal.ece(probs, labels)


@pytest.mark.parametrize("sigma", [0.0302734375, 0.0005])  # the kernel-matrix path, and the per-row path for tiny sigma
def test_resampled_kernel_sums_equal_the_direct_kernel_sums(sigma):
    rng = np.random.default_rng(3)
    points, weights = rng.random(300), rng.random((3, 300))
    mesh = np.linspace(0, 1, max(200, round(10 / sigma)))
    (sums,) = cal._kernel_sums(points, (weights,), sigma, mesh)
    direct = np.stack([cal._kernel_sum(points, row, sigma, mesh) for row in weights])
    np.testing.assert_allclose(sums, direct, rtol=1e-10, atol=1e-9)


def test_selective_prediction_auroc_against_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    p1 = np.round(rng.random(700), 2)  # rounded: many tied confidences, which count one half
    y = (rng.random(700) < p1).astype(int)
    confidence, correct = cal.top_label(p1, y)
    assert cal.auroc(p1, y) == pytest.approx(roc_auc_score(correct, confidence), abs=1e-12)
    assert np.isnan(cal.auroc(np.array([0.9, 0.8]), [1, 1]))  # all right: undefined


def test_risk_coverage_area_hand_computed():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong): risks at coverage 1..4 are 0, 1/2, 1/3, 2/4
    p1, y = np.array([0.9, 0.2, 0.7, 0.4]), np.array([1, 1, 1, 1])
    assert cal.aurc(p1, y) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    # a tie of the two middle ones: they enter together at coverage 3 with risk 1/3, each counted
    p1 = np.array([0.9, 0.3, 0.7, 0.4])
    assert cal.aurc(p1, y) == pytest.approx((0 + 1 / 3 + 1 / 3 + 2 / 4) / 4)
    assert cal.aurc(np.array([0.9, 0.8]), [1, 1]) == 0.0


def test_signed_error_and_brier_parts():
    p1, y = np.array([0.9, 0.2, 0.6, 0.6]), np.array([1, 1, 0, 1])
    # confidences 0.9, 0.8, 0.6, 0.6; right 1, 0, 0, 1
    assert cal.signed_calibration_error(p1, y) == pytest.approx((0.9 + 0.8 + 0.6 + 0.6) / 4 - 0.5)
    rng = np.random.default_rng(2)
    q = rng.random(300)
    t = (rng.random(300) < q).astype(int)
    assert cal.brier_reliability(q, t, 10) + cal.brier_refinement(q, t, 10) == pytest.approx(cal.brier(q, t), abs=1e-15)
    assert cal.brier_reliability(q, t, 10) == pytest.approx(cal.brier_decomposition(q, t, 10)["reliability"])
    # two bins of P(y=1) with constant forecasts 0.25 (frequency 1/2) and 0.75 (frequency 1): 2 (0.25^2 + 0.25^2) / 4
    assert cal.brier_reliability(np.array([0.25, 0.25, 0.75, 0.75]), [0, 1, 1, 1], 2) == pytest.approx(0.0625)


@pytest.mark.parametrize("shape", [(300, 200), (300, 3), (1, 200), (0, 200)])
def test_running_sum_is_numpys_cumsum_bit_for_bit(shape):
    values = np.random.default_rng(0).random(shape)
    for view in (values, values[::-1]):  # the risk-coverage curve reads its groups reversed
        assert np.array_equal(cal._running_sum(view), np.cumsum(view, axis=0))
