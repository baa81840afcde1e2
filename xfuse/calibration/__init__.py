"""Calibration mathematics, pure functions and small fitted maps: no training, no files.

Reads probabilities or logits with labels; writes nothing. Imports nothing of
xfuse but :mod:`xfuse.errors`, so every later stage may use it.

Entry points: the metrics of :mod:`xfuse.calibration.metrics` (``METRICS``,
``calibration_summary``, ``resampled_metrics``), the calibrators of
:mod:`xfuse.calibration.temperature` (``TemperatureScaler``, ``BiasScaler``),
few-shot temperature scaling (:func:`xfuse.calibration.fewshot.few_shot_ts`).

::

    from xfuse.calibration.metrics import calibration_summary
    summary = calibration_summary(probs, labels, bins=15, n_resamples=1000, seed=0)
"""
