"""Plain-language findings of a report, every number read from :func:`xfuse.report.build_report`'s tables.

Rules the sentences follow:

- every claim names its comparison (against the last layer or against the
  best single layer chosen on English dev), its condition and languages;
- "significant" means the seed-level paired test after Holm's correction
  (:mod:`xfuse.statistics`); a binned-ECE change is called a calibration
  difference only when it is also larger than the noise floor of both sides;
- configurations that did not learn on every seed are named and left out of
  every calibration statement; null results are stated as such.

Usage::

    for line in findings(tables):
        print(line)
"""

import numpy as np

from .report import CONSTANT, comparison, is_learned, lookup

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
        width = max((r["high"] - r["low"]) / 2 for r in rows)
        return text + (f"; significant in none of the {len(languages)} languages (not a demonstrated absence: the "
                       f"95% intervals of the change reach +-{width:.3f})")
    return text + "; " + "; ".join(parts)


def findings(tables: dict) -> list:
    languages, metrics = tables["languages"], tables["config"]["metrics"]
    last, best_single = tables["baseline"], tables["best_single"]
    lines = []
    if tables["not_learned"]:
        listed = "; ".join(f"{label(key)} (seeds {', '.join(map(str, seeds))})"
                           for key, seeds in tables["not_learned"].items())
        lines.append(f"- {len(tables['not_learned'])} of {len(tables['configurations']) - 1} configurations did not "
                     f"beat the prior on English dev on every seed and are left out of every calibration finding "
                     f"below: {listed}.")
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
            sentence = f"- {label(key)} against {name}:"
            if "accuracy" in metrics:
                sentence += f" accuracy changes {_changes(tables, reference, key, 'accuracy', 'uncalibrated')}."
            if "ece" in metrics and is_learned(tables, key) and is_learned(tables, tables["references"][reference]):
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
                rows = [row for row in tables["comparisons"] if row["reference"] == reference and row["metric"] == "ece"
                        and row["condition"] == condition and row["learned"] and row["kind"] != "reference"]
                lower = sum(r["significant"] and r["beyond_floor"] and r["delta"] < 0 for r in rows)
                higher = sum(r["significant"] and r["beyond_floor"] and r["delta"] > 0 for r in rows)
                small = sum(r["significant"] and not r["beyond_floor"] for r in rows)
                lines.append(f"- Across the grid, against {name}, {words}: of {len(rows)} comparisons of learned "
                             f"configurations (configuration x language; Holm within the pre-specified comparisons "
                             f"and within the rest of the grid), ECE is significantly lower by more than the noise "
                             f"floor in {lower}, significantly higher by more than it in {higher}; {small} more are "
                             "significant but smaller than the floor.")
    if "signed_calibration_error" in metrics:
        outside = [lang for lang in languages if lang != "en"]
        learned_keys = [key for key in tables["configurations"] if key != CONSTANT and is_learned(tables, key)]
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
            lines.append(f"- Direction, uncalibrated: of {total} (learned configuration, non-English language) pairs, "
                         f"{over} are overconfident (mean confidence minus accuracy, its whole 95% interval above 0; "
                         "intervals not adjusted for multiplicity) "
                         f"and {under} underconfident. Mean over learned configurations by language: {ordered}.")
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
            lines.append(f"- {label(key)}: zero-shot temperature scaling (T = {tables['temperatures'][key]:.3f}, "
                         f"fitted on English dev) lowers ECE significantly (same runs before and after, seeds as "
                         f"replicates) in {len(lowered)} of {len(languages)} languages"
                         + (f" ({', '.join(lowered)})" if lowered else "")
                         + f" (mean {np.mean(before):.4f} before, {np.mean([r['value'] for r in after]):.4f} after"
                         + (f"; {invalid} seed-language fits anti-informative" if invalid else "")
                         + f"); the per-language oracle temperature gives {np.mean(oracle):.4f}, against a noise "
                         f"floor of {np.mean(floor):.4f} (the ECE a perfectly calibrated model of the same confidences "
                         "would show).")
    late, early = tables["best_lower"].get("late"), [key for head, key in tables["best_lower"].items() if head != "late"]
    if late and early and {"accuracy", "ece"} <= set(metrics):
        early_best = min(early, key=lambda key: tables["dev_en_loss"][key])
        acc = {key: np.mean([lookup(tables, key, lang, "uncalibrated", "accuracy")["value"] for lang in languages])
               for key in (late, early_best)}
        ece = {key: np.mean([lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages])
               for key in (late, early_best)}
        learned_both = is_learned(tables, late) and is_learned(tables, early_best)
        lines.append(f"- Late against early fusion (each at its best lower layer on English dev): {label(late)} has "
                     f"mean accuracy {acc[late]:.3f}, {label(early_best)} {acc[early_best]:.3f}"
                     + (f"; mean ECE {ece[late]:.4f} and {ece[early_best]:.4f}" if learned_both else
                        "; calibration not compared, as a side did not learn on every seed")
                     + ". Late fusion averages two heads, so part of any difference may come from ensembling "
                     "itself; there is no seed-ensemble control yet.")
    return lines
