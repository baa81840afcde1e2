"""The encoder's layer-wise cross-lingual alignment beside the calibration results, with rank correlations.

The usual reason to fuse a lower layer is that lower layers are more
language-neutral (Chen et al. 2022, after Pires et al. 2019 and Muller et al.
2021). This section sets the alignment of each layer (:mod:`xfuse.features.align`)
beside what the heads did there, per layer ``k`` and target language ``l``:

- the ``single`` head on layer ``k``: its accuracy drop from English
  (``acc_en - acc_l``), its signed calibration error on ``l`` (mean confidence
  minus accuracy) and its ECE minus its English ECE, uncalibrated, mean over seeds;
- each fusion head with lower layer ``k``: its change against the last layer
  on ``l`` (ECE and accuracy, uncalibrated, the report's paired comparison).

Across layers within each language, the Spearman rank correlation of each
alignment measure with each of those quantities, with its number of points;
over languages, the median and range of the six correlations. Only
configurations that learned on every seed enter a correlation (the others are
listed); with 13 layers at most, six languages and one encoder this is
description, not a test, and says nothing about cause.

The alignment comes from ``--alignment CSV`` when given, else it is computed
from the plan's features store once and cached in the report cache under the
store's fingerprint (it depends only on the store); with neither, the section
says it is not there.

Usage::

    section = alignment_section(tables, rows)   # rows: xfuse.features.align.read_alignment(...)
"""

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from scipy.stats import spearmanr

from xfuse.errors import XfuseError
from xfuse.features.align import CSV_FILE, AlignConfig, compute_alignment, read_alignment, write_alignment
from xfuse.features.store import STORE_FILE, FeatureStore
from xfuse.report.tables import FUSION_HEADS, ReportConfig, comparison, is_learned, lookup

MEASURES = (("cka_debiased", "scaled"), ("retrieval_centred", "scaled"))  # the measures correlated, as heads see it
SINGLE_QUANTITIES = ("accuracy_drop", "signed_calibration_error", "ece_gap")
FUSION_QUANTITIES = ("ece_change", "accuracy_change")
QUANTITY_LABELS = {"accuracy_drop": "accuracy drop from English", "signed_calibration_error": "confidence minus accuracy",
                   "ece_gap": "ECE minus English's", "ece_change": "ECE change against the last layer",
                   "accuracy_change": "accuracy change against the last layer"}


def load_alignment(plan: dict, given: Optional[str], cache_dir: Optional[Path],
                   log: Callable[[str], None] = print) -> tuple:
    """(rows, source) of the alignment for the report, or (None, reason) when there is none.

    The source and the reason name the store by its fingerprint, not its path, so that the same study reported
    from two folders reads the same."""
    if given:
        return read_alignment(Path(given)), str(given)
    store_dir = Path(plan["store"])
    if not (store_dir / STORE_FILE).is_file():
        return None, "the plan's features store is not on this machine and no --alignment was given"
    fingerprint = FeatureStore(store_dir).settings.get("fingerprint", "unknown")
    store = f"the plan's features store (fingerprint {fingerprint[:16]})"
    if cache_dir is not None:
        cached = Path(cache_dir) / f"alignment-{fingerprint[:16]}" / CSV_FILE
        if cached.is_file():
            return read_alignment(cached), f"{store}, computed once and cached with the report"
    log(f"report: computing the alignment of {store_dir} (once per store)")
    try:
        result = compute_alignment(AlignConfig(store=str(store_dir), data_dir=plan["extract"].get("data_dir")),
                                   progress=False, log=log)
    except XfuseError as error:  # the report stands without this section; it says why
        return None, f"{store} could not be aligned ({str(error).replace(str(store_dir), 'the store')})"
    if cache_dir is not None:
        write_alignment(result, Path(cache_dir) / f"alignment-{fingerprint[:16]}", log=lambda line: None)
    return result["rows"], f"{store}, computed by this report"


def _values(rows: list) -> dict:
    return {(row["layer"], row["language"], row["measure"], row["features"]): row["value"] for row in rows}


def _spearman(points: list) -> dict:
    """Spearman's rho of (x, y) points with their number; None when fewer than 3 or a side is constant."""
    points = [(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]
    if len(points) < 3 or len({x for x, _ in points}) < 2 or len({y for _, y in points}) < 2:
        return {"rho": None, "n": len(points)}
    rho = spearmanr([x for x, _ in points], [y for _, y in points]).statistic
    return {"rho": float(rho), "n": len(points)}


def alignment_section(tables: dict, rows: list) -> dict:
    """Per layer and language, alignment beside the heads' results; correlations across layers; pure data."""
    values, last = _values(rows), tables["last"]
    languages = [lang for lang in tables["languages"] if lang != "en"]
    singles = {key[1][0]: key for key in tables["configurations"] if key[0] == "single" and tables["kinds"][key] == "trained"}
    layers = sorted(set(singles) | {row["layer"] for row in rows})
    per_layer = []
    for layer in layers:
        key = singles.get(layer)
        for lang in languages:
            entry = {"layer": layer, "lang": lang, "learned": bool(key and is_learned(tables, key))}
            for measure, view in MEASURES:
                entry[f"{measure}_{view}"] = values.get((layer, lang, measure, view), np.nan)
            if key:
                metric = lambda name, language: lookup(tables, key, language, "uncalibrated", name)["value"]
                entry["accuracy_drop"] = metric("accuracy", "en") - metric("accuracy", lang)
                entry["signed_calibration_error"] = metric("signed_calibration_error", lang)
                entry["ece_gap"] = metric("ece", lang) - metric("ece", "en")
            per_layer.append(entry)
    fusion = []
    for key in tables["configurations"]:
        if key[0] in FUSION_HEADS and len(key[1]) == 2 and key[1][1] == last:
            for lang in languages:
                change = lambda name: comparison(tables, "last_layer", key, lang, "uncalibrated", name)["delta"]
                fusion.append({"head": key[0], "layer": key[1][0], "lang": lang,
                               "learned": is_learned(tables, key) and is_learned(tables, tables["baseline"]),
                               "ece_change": change("ece"), "accuracy_change": change("accuracy"),
                               **{f"{measure}_{view}": values.get((key[1][0], lang, measure, view), np.nan)
                                  for measure, view in MEASURES}})
    correlations = []
    groups = [("single", per_layer, SINGLE_QUANTITIES)] + [
        (head, [entry for entry in fusion if entry["head"] == head], FUSION_QUANTITIES)
        for head in FUSION_HEADS if any(entry["head"] == head for entry in fusion)]
    for head, entries, quantities in groups:
        for measure, view in MEASURES:
            for quantity in quantities:
                per_language = {}
                for lang in languages:
                    points = [(entry[f"{measure}_{view}"], entry[quantity]) for entry in entries
                              if entry["lang"] == lang and entry["learned"] and quantity in entry]
                    per_language[lang] = _spearman(points)
                rhos = [value["rho"] for value in per_language.values() if value["rho"] is not None]
                correlations.append({"head": head, "measure": measure, "features": view, "quantity": quantity,
                                     "per_language": per_language,
                                     "median": float(np.median(rhos)) if rhos else None,
                                     "low": float(min(rhos)) if rhos else None,
                                     "high": float(max(rhos)) if rhos else None})
    left_out = sorted(layer for layer, key in singles.items() if not is_learned(tables, key))
    return {"per_layer": per_layer, "fusion": fusion, "correlations": correlations, "languages": languages,
            "single_layers_left_out": left_out,
            "fusion_left_out": sorted({(entry["head"], entry["layer"]) for entry in fusion if not entry["learned"]})}


def add_alignment(tables: dict, log: Callable[[str], None] = print) -> dict:
    """``tables["alignment"]``: the section's data and where the alignment came from (or why it is not there)."""
    config = tables["config"]
    cache_dir = ReportConfig(**{**config, "metrics": tuple(config["metrics"]),
                                "few_shot_ks": tuple(config["few_shot_ks"])}).cache_dir()
    rows, source = load_alignment(tables["plan"], config.get("alignment"), cache_dir, log)
    tables["alignment"] = {"source": source, **(alignment_section(tables, rows) if rows is not None else {})}
    return tables
