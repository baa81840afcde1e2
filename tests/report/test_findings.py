"""The plain-language findings on hand-built report tables: which configurations count, and hand-computed numbers."""

import numpy as np
import pytest

from xfuse.report.findings import (bias_findings, context, few_shot_findings, late_against_early, null_findings,
                                   overconfidence_ordering, processor_findings, sensitivity_findings,
                                   stability_findings)
from xfuse.report.tables import layers_text

LANGUAGES = ["en", "de", "ja"]
LAST = 12
SINGLE, BEST = ("single", (12,)), ("single", (7,))


def make_tables(values: dict, not_learned=(), few_shot=None, comparisons=None, positive_rate=None, **extra) -> dict:
    """Report tables holding ``values[(key, lang, condition, metric)]`` as seed-mean rows (noise floor 0.01)."""
    configurations = list(dict.fromkeys(key for key, *_ in values))
    index = {(key[0], layers_text(key), lang, condition, metric): {"value": value, "noise_floor": 0.01, "seeds": 5}
             for (key, lang, condition, metric), value in values.items()}
    comparison_index = {(reference, key[0], layers_text(key), lang, condition, metric): row
                        for (reference, key, lang, condition, metric), row in (comparisons or {}).items()}
    tables = {"configurations": configurations, "last": LAST, "languages": LANGUAGES, "index": index,
              "config": {"metrics": ("accuracy", "ece", "signed_calibration_error"), "alpha": 0.05,
                         "equivalence_margin": 0.01},
              "not_learned": {key: [0] for key in not_learned}, "few_shot": few_shot or {},
              "comparison_index": comparison_index, "positive_rate": positive_rate or {}, "best_single": BEST,
              "baseline": SINGLE, "conditions": ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias",
                                                 "oracle_bias"),
              "best_lower": {}, "dev_en_loss": {}, "provenance": {"files": []}, "plan": {"extract": {"encoder": "e"}}}
    tables.update(extra)
    return tables


def test_ordering_outside_english_over_layers_every_module_learned_with_both_rank_correlations():
    values = {}
    # (head, lower layer): (overconfidence, accuracy) outside English; mean confidence is their sum
    cells = {("aif", 0): (0.10, 0.50), ("aif", 7): (0.06, 0.58), ("dlfa", 0): (0.08, 0.54), ("dlfa", 7): (0.02, 0.60),
             ("mean", 0): (0.04, 0.52), ("mean", 7): (0.00, 0.56), ("aif", 3): (0.5, 0.55), ("dlfa", 3): (0.5, 0.55),
             ("mean", 3): (0.5, 0.55)}
    for (head, lower), (error, accuracy) in cells.items():
        for lang in LANGUAGES:
            english = lang == "en"  # English is left out: values there must not move anything
            values[((head, (lower, LAST)), lang, "uncalibrated", "signed_calibration_error")] = 9.0 if english else error
            values[((head, (lower, LAST)), lang, "uncalibrated", "accuracy")] = 0.0 if english else accuracy
    stuck = ("dlfa", (3, LAST))  # not learned: layer 3 leaves the comparison for every module
    (line,) = overconfidence_ordering(make_tables(values, not_learned=[stuck]))
    assert "over the 2 lower layers on which every fusion module learned on every seed (6 configurations; 3 other " \
           "fusion configurations left out)" in line and "averaged over 2 languages" in line
    assert "By module, most overconfident first (accuracy in brackets): aif +0.080 (0.540), dlfa +0.050 (0.570), " \
           "mean +0.020 (0.540)." in line
    assert "By lower layer, mean over the modules: 0 +0.073 (0.520), 7 +0.027 (0.580)." in line
    # ranks of overconfidence 6 4 5 2 3 1 against accuracy's 1 5 3 6 2 4: rho = 1 - 6 * 56 / 210 = -0.60; of mean
    # confidence (0.60 0.64 0.62 0.62 0.56 0.56, ties averaged: 3 6 4.5 4.5 1.5 1.5), Pearson's r on ranks: 9 / sqrt(
    # 16.5 * 17.5) = +0.53
    assert "overconfidence with accuracy -0.60 (negative by construction in part" in line
    assert "mean confidence with accuracy +0.53." in line
    learned_only = {k: v for k, v in values.items() if k[0] != ("aif", (7, LAST))}
    # every module learned on layer 0 alone; of the pairs, aif+mean share 0 and 3, dlfa+mean 0 and 7 (the first kept)
    (line,) = overconfidence_ordering(make_tables(learned_only, not_learned=[stuck]))
    assert "over the 2 lower layers on which every fusion module other than dlfa (left out: with it, fewer than two " \
           "lower layers have every module learned on every seed) learned on every seed (4 configurations" in line
    assert "By module, most overconfident first (accuracy in brackets): aif +0.300 (0.525), mean +0.270 (0.535)." \
        in line
    two = {k: v for k, v in learned_only.items() if k[0][0] != "mean"}
    (line,) = overconfidence_ordering(make_tables(two, not_learned=[stuck]))
    assert line == ("- Ordering outside English by fusion module and lower layer: not computed, as no two fusion "
                    "modules learned on every seed at two or more of the same lower layers (lower layers with every "
                    "seed learned: aif 0, 3; dlfa 0, 7).")


def few_shot_tables(zero: float, oracle: float, few: dict) -> dict:
    values = {}
    for lang in LANGUAGES:
        values[(BEST, lang, "zero_shot_ts", "ece")] = zero if lang != "en" else 1.0
        values[(BEST, lang, "oracle_ts", "ece")] = oracle if lang != "en" else 1.0
    table = {lang: {k: {"mean": value, "std": 0.0} for k, value in few.items()} for lang in LANGUAGES}
    table["ja"][500] = {"mean": oracle, "std": 0.0}  # a k missing in another language is not summarised
    return make_tables(values, few_shot={BEST: table})


def test_few_shot_names_the_k_that_closes_half_the_gap_and_the_k_within_the_oracles_noise_floor():
    # gap 0.10 - 0.04: half closed at <= 0.07 (k = 50), within the floor 0.01 at <= 0.05 (k = 100)
    (line,) = few_shot_findings(few_shot_tables(0.10, 0.04, {10: 0.09, 50: 0.06, 100: 0.045}))
    assert ("zero-shot (English dev) 0.1000, oracle (all of each language's dev set) 0.0400, the oracle's noise floor "
            "0.0100; with k labelled examples of the language: k = 10 0.0900, k = 50 0.0600, k = 100 0.0450.") in line
    assert "Half of the gap is closed at k = 50, and the ECE comes within the noise floor of the oracle's at k = 100 " \
           "(descriptive" in line and "k = 500" not in line
    (line,) = few_shot_findings(few_shot_tables(0.10, 0.04, {10: 0.095}))
    assert "No k tried closes half of the gap; none comes within the noise floor of the oracle's (" in line
    (line,) = few_shot_findings(few_shot_tables(0.045, 0.04, {10: 0.05}))  # gap 0.005, below the floor 0.01
    assert "within the noise floor of the oracle: there is no gap" in line
    (line,) = few_shot_findings(few_shot_tables(0.03, 0.09, {10: 0.05}))  # the oracle worse by 6 floors
    assert "better than the oracle by more than the noise floor: there is no gap" in line
    tables = few_shot_tables(0.10, 0.04, {10: 0.09})
    tables["not_learned"] = {BEST: [3]}
    assert few_shot_findings(tables) == []


def test_bias_counts_ece_changes_beyond_the_floor_beside_each_languages_shift_of_the_positive_rate():
    values = {(BEST, lang, "uncalibrated", "accuracy"): 0.6 for lang in LANGUAGES}
    rates = {(BEST, "en"): 0.40, (BEST, "de"): 0.45, (BEST, "ja"): 0.10}
    comparisons = {}
    # (delta, significant, beyond the floor) per language
    for condition, cells in (("zero_shot_bias", {"de": (0.002, True, False), "ja": (-0.004, True, True)}),
                             ("oracle_bias", {"de": (-0.001, True, True), "ja": (-0.030, True, True)})):
        for lang, (delta, significant, beyond) in cells.items():
            comparisons[("temperature", BEST, lang, condition, "ece")] = {
                "delta": delta, "significant": significant, "beyond_floor": beyond, "example_only": False}
    tables = make_tables(values, comparisons=comparisons, positive_rate=rates)
    tables["not_learned"] = {SINGLE: [0]}  # the last layer did not learn: only the best single layer is described
    (line,) = bias_findings(tables)
    assert line.startswith("- Temperature plus bias, single [7]: fitted on English dev, the bias changes ECE by "
                           "-0.0010 on average against the temperature alone (significantly lower by more than the "
                           "noise floor in 1 (ja), higher in 0; 1 more significant but below the floor); fitted per "
                           "language, the bias changes ECE by -0.0155 on average")
    assert "(significantly lower by more than the noise floor in 2 (de, ja), higher in 0)" in line
    assert line.endswith("largest shift first, with the oracle bias's ECE change: ja -0.300 (-0.0300), "
                         "de +0.050 (-0.0010).")
    for row in comparisons.values():
        row.update(example_only=True, significant=False)  # a side with one seed: nothing tested
    (line,) = bias_findings(tables)
    assert line.count("not tested at the seed level: a side has a single seed") == 2 and "lower by" not in line
    assert bias_findings(dict(tables, conditions=("uncalibrated", "zero_shot_ts", "oracle_ts"))) == []


def test_context_sets_this_settings_mean_accuracy_in_points_and_its_tested_change_beside_the_published_points():
    values, comparisons = {}, {}
    fusion = ("aif", (3, LAST))
    for key, accuracies in ((BEST, (0.60, 0.58, 0.56)), (fusion, (0.62, 0.59, 0.59))):
        for lang, accuracy in zip(LANGUAGES, accuracies):
            values[(key, lang, "uncalibrated", "accuracy")] = accuracy
    for lang, delta in zip(LANGUAGES, (0.02, 0.01, 0.03)):
        comparisons[("best_single", fusion, lang, "uncalibrated", "accuracy")] = {
            "delta": delta, "significant": lang == "ja", "example_only": False, "low": delta - 0.01,
            "high": delta + 0.01, "lang": lang}
    tables = make_tables(values, comparisons=comparisons, best_lower={"aif": fusion}, dev_en_loss={fusion: 0.6},
                         provenance={"files": [{"split": "train", "num_pairs": 8561}]})
    (line,) = context(tables)
    assert ("on 8,561 English pairs: the best single layer on English dev reaches 58.0 points of accuracy, averaged "
            "over this report's 3 test languages, and the fusion with the lowest dev-en loss (aif [3, 12]) 60.0, "
            "+2.0 points (per language, against the best single layer: from +0.010 to +0.030; significantly higher "
            "in 1 of 3 (ja))") in line
    assert "comparable to neither" in line
    assert "points (per language" not in context(dict(tables, best_lower={}))[0]  # no fusion: no change stated


def test_late_against_early_says_where_the_two_are_not_at_the_same_accuracy():
    late, early = ("late", (5, LAST)), ("aif", (3, LAST))
    values, comparisons = {}, {}
    for lang in LANGUAGES:
        for metric in ("accuracy", "ece"):
            values[(late, lang, "uncalibrated", metric)] = values[(early, lang, "uncalibrated", metric)] = 0.5
    for condition, shift in (("uncalibrated", 0.0), ("zero_shot_ts", 0.1)):  # conditions told apart
        for metric, deltas in (("accuracy", {"en": 0.01, "de": 0.03, "ja": -0.02}),
                               ("ece", {"en": -0.02 + shift, "de": -0.01 + shift, "ja": 0.00 + shift})):
            for lang in LANGUAGES:
                significant = (metric, lang) in (("accuracy", "de"), ("ece", "en"))
                comparisons[("early_fusion", late, lang, condition, metric)] = {
                    "delta": deltas[lang], "significant": significant, "example_only": False, "beyond_floor": True,
                    "low": deltas[lang] - 0.01, "high": deltas[lang] + 0.01, "lang": lang}
    tables = make_tables(values, comparisons=comparisons, late_against_early=(late, early))
    (line,) = late_against_early(tables)
    assert "(late [5, 12] against aif [3, 12], the fusion head with the lowest dev-en loss): accuracy changes from " \
           "-0.020 to +0.030; significantly higher in 1 of 3 (de)." in line
    assert "ECE changes from -0.020 to +0.000; significantly lower in 1 of 3 (en); of those, larger than the noise " \
           "floor in 1 uncalibrated, and from +0.080 to +0.100; significantly higher in 1 of 3 (en)" in line
    assert "; in de the two are not at the same accuracy." in line
    tables["not_learned"] = {early: [1]}
    assert "Calibration not compared: a side did not learn on every seed." in late_against_early(tables)[0]
    assert late_against_early(dict(tables, late_against_early=None)) == []


def test_late_fusion_is_set_beside_the_seed_ensemble_of_the_best_single_layer():
    late, early, ensemble = ("late", (5, LAST)), ("aif", (3, LAST)), ("ensemble", (7,))
    values, comparisons = {}, {}
    # accuracy and ECE per language (en, de, ja) of the best single layer, its seed ensemble and late fusion
    for key, accuracy, ece in ((BEST, (0.60, 0.58, 0.56), (0.05, 0.07, 0.09)),
                               (ensemble, (0.61, 0.58, 0.58), (0.04, 0.06, 0.08)),
                               (late, (0.62, 0.61, 0.57), (0.02, 0.05, 0.05)), (early, (0.6,) * 3, (0.05,) * 3)):
        for lang, a, e in zip(LANGUAGES, accuracy, ece):
            values[(key, lang, "uncalibrated", "accuracy")], values[(key, lang, "uncalibrated", "ece")] = a, e
    for condition in ("uncalibrated", "zero_shot_ts"):
        for metric in ("accuracy", "ece"):
            for lang in LANGUAGES:
                comparisons[("early_fusion", late, lang, condition, metric)] = {
                    "delta": 0.0, "significant": False, "example_only": False, "beyond_floor": False, "low": -0.01,
                    "high": 0.01, "lang": lang}
    tables = make_tables(values, comparisons=comparisons, late_against_early=(late, early))
    (line,) = late_against_early(tables)
    # over the 3 languages: ensemble accuracy +0.010, ECE -0.0100; late +0.020, -0.0300 against the best single layer
    assert ("against the best single layer (single [7]), averaged over the 3 languages, uncalibrated, averaging two of "
            "its heads that differ only by seed (the seed ensemble, no fusion) changes accuracy by +0.010 and ECE by "
            "-0.0100, late fusion (late [5, 12]) accuracy by +0.020 and ECE by -0.0300 (differences of seed means, not "
            "tested: the ensemble's members share runs).") in line
    tables["not_learned"] = {ensemble: [2]}
    assert "ECE by" not in late_against_early(tables)[0].split("the seed ensemble")[1]


def _comparison(reference, key, lang, metric, delta, half, significant, condition="uncalibrated", floor=None,
                seeds=5, low=None, high=None, family="primary"):
    """A tested comparison row with a Bonferroni half-width ``half`` (and an unadjusted one of half of it)."""
    return {"reference": reference, "head": key[0], "layers": layers_text(key), "lang": lang, "metric": metric,
            "condition": condition, "delta": delta, "low_adjusted": delta - half, "high_adjusted": delta + half,
            "family_size": 4, "low": delta - half / 2 if low is None else low,
            "high": delta + half / 2 if high is None else high, "significant": significant, "p_holm": 0.5,
            "p_value": 0.1, "kind": "trained", "noise_floor": floor,
            "beyond_floor": None if floor is None else abs(delta) > floor, "seeds": seeds, "example_only": False,
            "learned": True, "family": family, "se": half / 4, "seed_parts": ((half ** 2 / 32, seeds),) * 2}


def test_stability_counts_learned_seeds_by_head_and_names_partial_and_never_learned_layers():
    learned = {("single", (3,)): 0, ("single", (12,)): 5, ("aif", (0, 12)): 2, ("aif", (4, 12)): 5,
               ("dlfa", (0, 12)): 0, ("scalar_mix", tuple(range(13))): 4}
    index = {(key[0], layers_text(key), "en", "uncalibrated", "accuracy"): {
        "learned_seeds": count, "seeds": 5, "lower_layer": None if key[0] == "scalar_mix" else key[1][0]}
        for key, count in learned.items()}
    tables = make_tables({}, configurations=[("constant", ())] + list(learned), index=index,
                         kinds={key: "trained" for key in learned}, languages=["en"])
    (line,) = stability_findings(tables)
    assert "2 of 6 configurations learned on every seed." in line
    assert "Learned seeds by head, over its layers: single 5/10, aif 7/10, dlfa 0/5, scalar_mix 4/5." in line
    assert "Learned on some seeds only, by (lower) layer: aif 0 (2/5); scalar_mix 0_1_2_3_4_5_6_7_8_9_10_11_12 " \
           "(4/5)." in line
    assert line.endswith("Learned on no seed: single 3; dlfa 0.")


def test_nulls_give_their_adjusted_bounds_by_family_and_scope_beside_the_noise_floor_and_the_width_of_three_seeds():
    fused, other = ("aif", (4, LAST)), ("mean", (4, LAST))
    rows = [_comparison("best_single", fused, "de", "ece", 0.004, 0.010, False, floor=0.012),
            _comparison("best_single", fused, "ja", "ece", -0.002, 0.020, False, floor=0.008),
            _comparison("best_single", other, "de", "ece", 0.050, 0.010, True, floor=0.012),  # not a null
            _comparison("best_single", fused, "outside-en", "ece", 0.001, 0.006, False, floor=0.010),
            _comparison("best_single", other, "ja", "ece", 0.001, 0.040, False, floor=0.012, family="grid"),
            _comparison("best_single", fused, "de", "accuracy", 0.01, 0.03, False),
            _comparison("best_single_3seeds", fused, "de", "accuracy", 0.01, 0.06, False, seeds=3, low=-0.02,
                        high=0.04, family="primary_3seeds")]
    index = {(r["reference"], r["head"], r["layers"], r["lang"], r["condition"], r["metric"]): r for r in rows}
    tables = make_tables({}, comparisons={}, comparison_index=index)
    tables["comparisons"] = rows
    accuracy, ece, seeds = null_findings(tables)
    assert accuracy.startswith("- What the nulls rule out, accuracy against the best single layer (Bonferroni-adjusted "
                               "intervals within each Holm family, simultaneous 95%): pre-specified, per language: 1 "
                               "of 1 not significant (Holm family of 4), half-widths median 0.030, largest 0.030 (aif "
                               "[4, 12], de: -0.020 to +0.040).")
    assert ("pre-specified, averaged outside English: 1 of 1 not significant (Holm family of 4), half-widths median "
            "0.006, largest 0.006 (aif [4, 12]: -0.005 to +0.007), noise floor median 0.010; pre-specified, per "
            "language: 2 of 3 not significant (Holm family of 4), half-widths median 0.015, largest 0.020 (aif [4, "
            "12], ja: -0.022 to +0.018), noise floor median 0.010 (half-widths 1.5 times it: changes the size of the "
            "floor cannot be detected here); rest of the grid, per language: 1 of 1 not "
            "significant (Holm family of 4), half-widths median 0.040, largest 0.040 (mean [4, 12], ja") in ece
    assert "`debiased_delta` in comparisons.csv" in ece
    # accuracy de: width 0.030 with 5 seeds; observed 0.060 on three; projected: se 0.0075, seed parts 0.03^2 / 32
    # each, rest 0: at 3 seeds each 0.03^2 / 32 * 5 / 3, total 0.03^2 * 10 / 96, dof (2 equal parts of 2 each) 4
    projected = 2.7764 * 0.03 * np.sqrt(10 / 96)
    assert f"for accuracy, {0.03 / (2 * projected):.2f} times as wide as the same comparisons projected to 3 seeds" \
           in seeds
    assert "and 0.50 times as wide as observed on the first 3 seeds (one nested draw, 0.50 to 0.50)" in seeds
    assert "sqrt(3/5) = 0.77" in seeds and "from 4.30 (2 degrees of freedom) towards 2.78 (4)" in seeds


def test_sensitivity_redoes_partial_configurations_on_their_learned_seeds_and_says_what_would_change():
    partial, full = ("aif", (0, LAST)), ("mean", (5, LAST))
    values = {(key, lang, "uncalibrated", "accuracy"): 0.6 for key in (partial, full, BEST, SINGLE)
              for lang in LANGUAGES}
    rows = [_comparison("best_single", full, "de", "ece", -0.03, 0.01, True, floor=0.01),  # main grid: lower
            _comparison("best_single_learned", partial, "de", "ece", 0.04, 0.01, True, floor=0.01, seeds=3),
            _comparison("best_single_learned", partial, "ja", "ece", 0.005, 0.01, True, floor=0.01, seeds=3),
            _comparison("best_single_learned", partial, "outside-en", "ece", 0.02, 0.015, True, floor=0.01, seeds=3)]
    per_seed = []  # outside English, per seed: aif's seed 0 did not learn and must not count
    for key, (error, accuracy) in ((partial, (0.05, 0.60)), (full, (0.02, 0.62))):
        for seed in range(5):
            wild = key == partial and seed == 0
            for metric, value in (("signed_calibration_error", 9.0 if wild else error),
                                  ("accuracy", 0.0 if wild else accuracy)):
                per_seed.append({"head": key[0], "layers": layers_text(key), "lang": "outside-en", "seed": seed,
                                 "condition": "uncalibrated", "metric": metric, "value": value})
    tables = make_tables(values, not_learned=[partial], primary=[SINGLE, BEST, partial, full], rows=per_seed,
                         references={"last_layer": SINGLE, "best_single": BEST})
    tables["comparisons"] = rows
    lines = sensitivity_findings(tables)
    assert "1 trained configurations learned on some seeds only; the comparisons of 1 configurations" in lines[0]
    assert ("- Against the best single layer, uncalibrated, on learned seeds: of 2 (configuration x language) ECE "
            "comparisons, 0 are significantly lower and 1 significantly higher by more than the noise floor (aif "
            "[0, 12] de +0.040), beside 1 lower and 0 higher of the 1 comparisons on every seed above (separate Holm "
            "families: not one analysis).") in lines[1]
    assert "aif [0, 12] on 3 seeds +0.020 [+0.005, +0.035] significant (Holm is the more powerful" in lines[1]
    assert lines[-1].startswith("- What would change: the pre-specified aif [0, 12] learned on some seeds only and "
                                "have no calibration finding above; their comparisons on learned seeds are in the "
                                "lines just above.")
    assert lines[-1].endswith("Redone conditional on learning (every fusion configuration with two or more learned "
                              "seeds, 2 of 2, on those seeds), the module ordering, most overconfident first, is aif "
                              "+0.050 (accuracy 0.600, 1 lower layer), mean +0.020 (accuracy 0.620, 1 lower layer). "
                              "The modules' lower layers differ, so this ordering mixes module and layer; "
                              "descriptive, no intervals.")
    tables["not_learned"] = {BEST: [0]}  # the reference itself is partial
    assert "the best single learned on some seeds only, so every calibration comparison against it above is left " \
           "out" in sensitivity_findings(tables)[-1]
    tables["not_learned"] = {}
    assert sensitivity_findings(tables)[0].startswith("- Sensitivity to learning: no trained configuration learned")


def test_processors_are_counted_per_configuration_and_mixed_ones_split_by_learned_seeds():
    mixed, alone = ("single", (10,)), ("single", (4,))
    amd, intel = "AMD EPYC", "Intel Xeon (6/207/2)"
    tables = make_tables({}, not_learned=[], provenance={"seeds_by_processor": {
        mixed: {amd: [0, 1, 2], intel: [3, 4]}, alone: {amd: [0, 1, 2, 3, 4]}}})
    tables["not_learned"] = {mixed: [1, 3]}
    (line,) = processor_findings(tables)
    assert "2 processors ran the trained runs; 1 configurations ran only on AMD EPYC, 0 configurations ran only on " \
           "Intel Xeon (6/207/2), 1 on more than one." in line
    assert "single [10]: 2/3 learned on AMD EPYC, 1/2 learned on Intel Xeon (6/207/2)" in line
    fused = ("aif", (4, LAST))
    tables["provenance"]["seeds_by_processor"][fused] = {intel: [0, 1]}
    tables["references"] = {"best_single": alone, "last_layer": mixed}
    (line,) = processor_findings(tables)
    assert line.endswith("The best single layer (single [4]) ran on AMD EPYC only, and 1 of the 2 other "
                         "configurations on other processors only: those comparisons are also comparisons across "
                         "processors (a rerun of the reference on the other processor bounds that part).")
    one = make_tables({}, provenance={"seeds_by_processor": {alone: {amd: [0, 1]}, mixed: {"not recorded": [0]}}})
    assert processor_findings(one) == ["- Processors: every run that recorded its processor ran on AMD EPYC (1 runs "
                                       "recorded no processor), so this study cannot detect a processor effect."]


def test_late_against_early_states_equivalence_within_the_margin_only_where_both_one_sided_tests_reject():
    late, early = ("late", (5, LAST)), ("aif", (3, LAST))
    values, comparisons = {}, {}
    for lang in LANGUAGES + ["outside-en"]:
        for metric in ("accuracy", "ece"):
            values[(late, lang, "uncalibrated", metric)] = values[(early, lang, "uncalibrated", metric)] = 0.5
    # se 0.002 and 10 dof: t_{0.95, 10} = 1.8125, 90% half-width 0.003625; ja's se 0.01 reaches past the margin
    for lang, delta, se, equivalent in (("outside-en", 0.001, 0.002, True), ("en", 0.002, 0.002, True),
                                        ("de", -0.003, 0.002, True), ("ja", 0.0, 0.01, False)):
        for metric in ("accuracy", "ece"):
            comparisons[("early_fusion", late, lang, "uncalibrated", metric)] = {
                "delta": delta, "significant": False, "example_only": False, "beyond_floor": False, "se": se,
                "dof": 10.0, "low": delta - 2 * se, "high": delta + 2 * se, "lang": lang, "low_adjusted": delta - 3 * se,
                "high_adjusted": delta + 3 * se, "family_size": 3, "noise_floor": 0.01, "p_holm": 0.9,
                "equivalence_p_holm": 0.01 if equivalent else 0.4, "equivalent": equivalent}
            comparisons[("early_fusion", late, lang, "zero_shot_ts", metric)] = dict(
                comparisons[("early_fusion", late, lang, "uncalibrated", metric)])
    tables = make_tables(values, comparisons=comparisons, late_against_early=(late, early))
    tables["index"][("single", "12", "outside-en", "uncalibrated", "accuracy")] = {"value": 0.5}  # has pooled rows
    (line,) = late_against_early(tables)
    assert ("Equally accurate within +-0.01 (two one-sided tests at 0.05, each a 90% interval inside the margin; Holm "
            "over the languages): averaged outside English shown (p 0.01, interval [-0.003, +0.005]), per language "
            "shown in 2 of 3 (en, de); the widest interval [-0.018, +0.018] (ja).") in line
    assert "Not significantly different is not the same as equivalent" in line
    for row in comparisons.values():
        row["equivalence_p_holm"] = None
    assert "Equivalence within +-0.01 accuracy is not tested" in late_against_early(tables)[0]
