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

NON_ENGLISH = lambda languages: [lang for lang in languages if lang != "en"]  # noqa: E731


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
    up = [r["lang"] for r in rows if r["significant"] and r["delta"] > 0]
    down = [r["lang"] for r in rows if r["significant"] and r["delta"] < 0]
    parts = [f"significantly {word} in {len(langs)} of {len(languages)} ({', '.join(langs)})"
             for word, langs in (("higher", up), ("lower", down)) if langs]
    if metric in ("ece", "adaptive_ece"):
        beyond = [r["lang"] for r in rows if r["significant"] and r["beyond_floor"]]
        parts.append(f"of those, beyond the noise floor in {len(beyond)}" if up or down else "")
    parts = [part for part in parts if part]
    return text + ("; " + "; ".join(parts) if parts else f"; significant in none of the {len(languages)} languages")


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
        for key, what in ((CONSTANT, "The floor, a constant prediction at the English training base rate "
                                     f"({tables['base_rate']:.3f}),"),
                          (last, f"The last layer ({label(last)})"),
                          (best_single, f"The best single layer on English dev ({label(best_single)}, dev-en loss "
                                        f"{tables['dev_en_loss'][best_single]:.4f})")):
            accuracy = [lookup(tables, key, lang, "uncalibrated", "accuracy")["value"] for lang in languages]
            sentence = f"- {what} reaches accuracy {_range(accuracy)} across the {len(languages)} languages"
            if "ece" in metrics:
                ece = [lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages]
                sentence += f", with ECE {_range(ece)}"
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
                rows = [row for row in tables["comparisons"] if row["reference"] == reference and row["metric"] == "ece"
                        and row["condition"] == condition and row["learned"] and row["kind"] != "reference"]
                if not is_learned(tables, tables["references"][reference]):
                    lines.append(f"- Across the grid, against {name}, {words}: no calibration comparison, as "
                                 f"{label(tables['references'][reference])} did not learn on every seed.")
                    continue
                lower = sum(r["significant"] and r["beyond_floor"] and r["delta"] < 0 for r in rows)
                higher = sum(r["significant"] and r["beyond_floor"] and r["delta"] > 0 for r in rows)
                small = sum(r["significant"] and not r["beyond_floor"] for r in rows)
                lines.append(f"- Across the grid, against {name}, {words}: of {len(rows)} comparisons of learned "
                             f"configurations (configuration x language), ECE is significantly lower beyond the noise "
                             f"floor in {lower}, significantly higher beyond it in {higher}; {small} more are "
                             "significant but smaller than the floor.")
    if "signed_calibration_error" in metrics:
        outside = NON_ENGLISH(languages)
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
                         f"{over} are overconfident (mean confidence minus accuracy, its whole 95% interval above 0) "
                         f"and {under} underconfident. Mean over learned configurations by language: {ordered}.")
    if "ece" in metrics:
        for key in dict.fromkeys([best_single, last]):
            if not is_learned(tables, key):
                continue
            before = [lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages]
            after = [lookup(tables, key, lang, "zero_shot_ts", "ece")["value"] for lang in languages]
            oracle = [lookup(tables, key, lang, "oracle_ts", "ece")["value"] for lang in languages]
            floor = [lookup(tables, key, lang, "oracle_ts", "ece")["noise_floor"] for lang in languages]
            lowered = sum(a < b for a, b in zip(after, before))
            lines.append(f"- {label(key)}: zero-shot temperature scaling (T = {tables['temperatures'][key]:.3f}, "
                         f"fitted on English dev) lowers ECE in {lowered} of {len(languages)} languages (mean "
                         f"{np.mean(before):.4f} before, {np.mean(after):.4f} after); the per-language oracle "
                         f"temperature gives {np.mean(oracle):.4f}, against a noise floor of {np.mean(floor):.4f} "
                         "(the ECE a perfectly calibrated model of the same confidences would show).")
    late, early = tables["best_lower"].get("late"), [key for head, key in tables["best_lower"].items() if head != "late"]
    if late and early and {"accuracy", "ece"} <= set(metrics):
        early_best = min(early, key=lambda key: tables["dev_en_loss"][key])
        acc = {key: np.mean([lookup(tables, key, lang, "uncalibrated", "accuracy")["value"] for lang in languages])
               for key in (late, early_best)}
        ece = {key: np.mean([lookup(tables, key, lang, "uncalibrated", "ece")["value"] for lang in languages])
               for key in (late, early_best)}
        learned_both = is_learned(tables, late) and is_learned(tables, early_best)
        lines.append(f"- Late against early fusion (each at its best lower layer on English dev): {label(late)} has "
                     f"mean accuracy {acc[late]:.3f} and mean ECE {ece[late]:.4f}; {label(early_best)} "
                     f"{acc[early_best]:.3f} and {ece[early_best]:.4f}"
                     + ("" if learned_both else " (a side did not learn on every seed: calibration not compared)")
                     + ". Their changes against the best single layer are in the comparison tables.")
    return lines
