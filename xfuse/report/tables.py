"""``xfuse report``, its tables: every configuration's metrics with seed-level intervals, reference rows, paired tests.

Rows (``results.csv``): for each configuration, test language, condition and
metric, the mean over seeds with a 95% interval that includes seed-to-seed
variation (:func:`xfuse.report.statistics.seed_interval`: ``value +- t_nu * se``,
its lower end truncated at 0 for metrics that cannot be negative, so it
contains its point estimate), one row per seed beside it,
and, for the binned ECEs, the **noise floor**: the expected ECE of a
perfectly calibrated model with the same confidences and number of examples
(:func:`xfuse.report.statistics.ece_noise_floor`, simulated, mean over seeds).

Each configuration's predicted-positive rate per test language (uncalibrated, mean over seeds) is kept
for the findings on the bias term (``positive_rate``).

Configurations: every trained one of the sweep; **late fusion** (mean of the
class probabilities of ``single`` heads: the last layer with each lower one,
and the best ``k`` layers by dev-en loss with ``k`` chosen by the fused
dev-en loss; :mod:`xfuse.report.results`); the **seed ensemble**, its control: the
best single layer's heads averaged two seeds at a time (seeds ``i`` and
``i+1``), ensembling without fusion, described but not tested (its members
share runs); and three **reference rows**:

- ``constant``: the floor, a constant prediction at the English training base rate;
- the **last layer** (``single`` on layer L, the previous baseline);
- the **best single layer**, chosen on English dev (lowest mean dev-en loss at
  the selected epoch), never on test.

Comparisons (``comparisons.csv``): every configuration against both
references (last layer, best single layer), paired on the test examples with
seeds as replicates (:func:`xfuse.report.statistics.paired_seed_test`), and each
pre-specified configuration calibrated against itself uncalibrated, and its temperature plus bias against its
temperature alone fitted on the same set (reference ``temperature``), and late fusion at its best lower layer
against the early fusion chosen on dev-en among the fusion heads at theirs (reference ``early_fusion``). Holm's
adjustment runs within each (reference, metric, condition), separately over
the pre-specified comparisons (each strategy at its lower layer chosen on
dev-en, scalar_mix, the late top-k) and over the rest of the grid; a
comparison with a one-seed side is not tested, nor is a calibration metric
where a side did not learn. A binned-ECE change counts as ``beyond_floor``
when it is larger than the noise floor of both sides; ``debiased_delta`` is
the change minus the change of the floor (the floor grows as confidences
spread, so part of an ECE change between models of different sharpness is
the floor's).

A configuration has ``learned`` when every seed beat the prior on English dev
(:func:`xfuse.heads.diagnostics.learned`). Those that did not stay in the tables,
marked, and are left out of every calibration finding (:mod:`xfuse.report.findings`).

Usage::

    tables = build_report(ReportConfig(plan="sweeps/e5/plan.json"))
    write_report(tables, Path("sweeps/e5/report"))     # xfuse.report.render
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from xfuse.calibration.metrics import (METRICS, metric_value, predicted_class, resample_counts, resampled_metrics,
                                      smooth_ece_at, smooth_ece_bandwidth, top_label)
from xfuse.errors import XfuseError
from xfuse.calibration.fewshot import DEFAULT_KS, few_shot_ts
from xfuse.report.cache import EntryCache, content_key
from xfuse.report.results import (constant_member, fused_dev_en_loss, late_fusion, load_sweep, recorded_recipe, seed_ensemble,
                      train_base_rate)
from xfuse.sweep.plan import sweep_paths
from xfuse.report.statistics import bonferroni_interval, ece_noise_floors, equivalence_test, holm, paired_seed_test, seed_interval
from xfuse.calibration.temperature import logit_difference_probabilities

REPORT_METRICS = ("accuracy", "ece", "adaptive_ece", "smooth_ece", "signed_calibration_error", "brier",
                  "brier_reliability", "brier_refinement", "nll", "auroc", "aurc")
HIGHER_IS_BETTER = ("accuracy", "auroc")
FLOORED = {"ece": False, "adaptive_ece": True}  # binned ECEs with a noise floor: equal-mass bins?
NON_NEGATIVE = ("ece", "adaptive_ece", "smooth_ece", "mce", "classwise_ece", "brier", "brier_reliability",
                "brier_refinement", "nll", "aurc")  # intervals truncated at 0 (xfuse.report.statistics.seed_interval)
CALIBRATION_METRICS = ("ece", "adaptive_ece", "smooth_ece", "signed_calibration_error", "brier_reliability", "nll")
FUSION_HEADS = ("dlfa", "aif", "concat", "mean")
BIAS_AGAINST_TEMPERATURE = (("zero_shot_bias", "zero_shot_ts"), ("oracle_bias", "oracle_ts"))
CONSTANT = ("constant", ())
POOLED = "outside-en"  # the rows and comparisons of the mean over the non-English test languages
CACHE_FOLDER = ".report-cache"
ENSEMBLE_SIZE = 2  # heads per seed ensemble, as many as late fusion's pairs average
LEARNED_SUFFIX = "_learned"  # a reference's comparisons redone on the learned seeds of partially learned sides
FEW_SEEDS, FEW_SEEDS_SUFFIX = 3, "_3seeds"  # a reference's pre-specified comparisons redone on the first 3 seeds


@dataclass(frozen=True)
class ReportConfig:
    plan: str
    metrics: tuple = REPORT_METRICS
    n_resamples: int = 200  # a variance estimate (xfuse.report.statistics), not percentiles: SE within about 5%
    seed: int = 0
    alpha: float = 0.05
    equivalence_margin: float = 0.01  # late against early fusion: equally accurate within +- this (two one-sided tests)
    workers: int = 1  # languages computed in parallel processes
    few_shot_ks: tuple = DEFAULT_KS  # labelled target-language dev examples of few-shot temperature scaling
    few_shot_draws: int = 100  # draws of each k (0: no few-shot section)
    floor_simulations: int = 200  # simulations of the ECE noise floor per seed, language and condition
    cache: Optional[str] = None  # folder of the per-run entries (xfuse.report.cache); None: <sweep>/.report-cache
    use_cache: bool = True  # False: compute every entry, read and write none
    alignment: Optional[str] = None  # alignment.csv of xfuse align; None: from the plan's store (xfuse.report.alignment)

    def cache_dir(self) -> Optional[Path]:
        if not self.use_cache:
            return None
        return Path(self.cache) if self.cache else sweep_paths(Path(self.plan))["root"] / CACHE_FOLDER

    def validate(self) -> None:
        unknown = [name for name in self.metrics if name not in METRICS]
        if unknown:
            raise XfuseError(f"--metrics: unknown metric {unknown[0]!r}; expected some of {', '.join(METRICS)}")
        if int(self.n_resamples) < 100:
            raise XfuseError(f"--bootstrap: expected at least 100 resamples, got {self.n_resamples}")
        if not 0 < self.alpha < 1:
            raise XfuseError(f"--alpha: expected a level in (0, 1), got {self.alpha}")
        if not 0 < self.equivalence_margin < 1:
            raise XfuseError(f"--equivalence-margin: expected an accuracy difference in (0, 1), got "
                             f"{self.equivalence_margin}")
        if int(self.workers) < 1:
            raise XfuseError(f"--workers: expected an integer >= 1, got {self.workers}")
        if int(self.floor_simulations) < 10:
            raise XfuseError(f"--floor-simulations: expected at least 10, got {self.floor_simulations}")


def layers_text(key: tuple) -> str:
    return "_".join(map(str, key[1]))


def lower_layer(key: tuple, last: int) -> Optional[int]:
    """The layer a configuration varies across the grid: a fusion's lower layer, a single head's layer."""
    head, layers = key
    if head in FUSION_HEADS + ("late",) and len(layers) == 2 and layers[1] == last:
        return layers[0]
    if head == "single" and len(layers) == 1:
        return layers[0]
    return None


def _late_configurations(configurations: dict, last: int, base_rate: float, conditions: tuple, log,
                         cache: Optional[EntryCache] = None) -> tuple:
    """Late fusion of single heads: the last layer with each lower one, and the best k by dev-en loss."""
    singles = {key[1][0]: members for key, members in configurations.items() if key[0] == "single"}
    late = {}
    if last not in singles or len(singles) < 2:
        return late, None
    for lower in sorted(singles):
        members = late_fusion([singles[lower], singles[last]], base_rate, conditions, cache) if lower != last else []
        if members:  # layers trained on disjoint seeds have nothing to fuse
            late[("late", (lower, last))] = members
    ranked = sorted(singles, key=lambda layer: (np.mean([m.dev_en_loss for m in singles[layer]]), layer))
    losses = {k: fused_dev_en_loss([singles[layer] for layer in ranked[:k]]) for k in range(2, len(ranked) + 1)}
    best_k = min(losses, key=lambda k: (losses[k], k))  # chosen on English dev: the fused dev-en loss, mean over seeds
    if not np.isfinite(losses[best_k]):
        return late, None
    key = ("late", tuple(sorted(ranked[:best_k])))
    if key not in late:
        late[key] = late_fusion([singles[layer] for layer in ranked[:best_k]], base_rate, conditions, cache)
    log(f"report: late fusion of {len(late)} layer sets (best k = {best_k} by dev-en loss: layers {list(key[1])})")
    return late, key


def member_entry(part: dict, maps: dict, conditions: tuple, metrics: tuple, bins: int, counts: np.ndarray,
                 floor_simulations: int, floor_seed: int) -> dict:
    """What one member contributes on one test part, for every condition: pure, cached (:mod:`xfuse.report.cache`).

    ``values`` (C, M): each metric on the test set; ``resampled`` (C, M, R): on
    each bootstrap resample given as ``counts``; ``floors`` (C, F): the ECE noise
    floor (:func:`xfuse.report.statistics.ece_noise_floors`) of each metric of
    ``FLOORED`` that is in ``metrics``, mean over ``floor_simulations``. The smooth
    ECE's bandwidth is found once per condition and shared by the value and its resamples.
    """
    floored = [name for name in FLOORED if name in metrics]
    values = np.empty((len(conditions), len(metrics)))
    resampled = np.empty((len(conditions), len(metrics), counts.shape[0]))
    floors = np.empty((len(conditions), len(floored)))
    for c, condition in enumerate(conditions):
        probs = logit_difference_probabilities(part["logits"], *maps[condition])
        confidence, correct = top_label(probs, part["labels"])
        sigma = smooth_ece_bandwidth(confidence, correct) if "smooth_ece" in metrics else None
        samples = resampled_metrics(probs, part["labels"], counts, bins, metrics, smooth_sigma=sigma)
        for m, name in enumerate(metrics):
            values[c, m] = (smooth_ece_at(confidence, correct, sigma) if name == "smooth_ece"
                            else metric_value(name, probs, part["labels"], bins))
            resampled[c, m] = samples[name]
        if floored:
            simulated = ece_noise_floors(confidence, bins, [FLOORED[name] for name in floored], floor_simulations,
                                         floor_seed)
            floors[c] = [floor["mean"] for floor in simulated]
    return {"values": values, "resampled": resampled, "floors": floors}


def _entry_key(job: dict, member, lang: str) -> str:
    part = member.parts[f"test-{lang}"]
    maps = [list(map(float, member.calibrations[lang][condition])) for condition in job["conditions"]]
    return content_key("member-entry", part["logits"], part["labels"], maps, list(job["conditions"]),
                       list(job["metrics"]), job["bins"], job["n_resamples"], job["seed"], job["union_size"],
                       np.asarray(job["columns"], dtype=np.int64), job["floor_simulations"],
                       job["floor_seed"] + member.seed)


def _compute_unit(unit: dict) -> tuple:
    """One (member, language) unit of work, in a worker process: (cache key, entry)."""
    if unit["kind"] == "member":
        counts = resample_counts(unit["union_size"], unit["n_resamples"], unit["seed"])[:, unit["columns"]]
        return unit["key"], member_entry(unit["part"], unit["maps"], unit["conditions"], unit["metrics"], unit["bins"],
                                         counts, unit["floor_simulations"], unit["floor_seed"])
    return unit["key"], few_shot_entry(unit["dev"], unit["test"], unit["ks"], unit["draws"], unit["seed"],
                                       unit["bins"])


def compute_entries(units: list, cache: EntryCache, workers: int, log: Callable[[str], None] = print) -> dict:
    """Every unit's entry by key: read from ``cache``, or computed in ``workers`` processes and stored there.

    Units are members on one language (:func:`member_entry`) or their few-shot
    draws (:func:`few_shot_entry`); each is small, so the work spreads evenly
    over the workers whatever the number of languages.
    """
    entries, todo = {}, []
    for unit in units:
        if unit["key"] in entries:
            continue
        entry = cache.load(unit["key"])
        if entry is None:
            todo.append(unit)
            entries[unit["key"]] = None
        else:
            cache.reused.append(unit["label"])
            entries[unit["key"]] = entry
    labels = {unit["key"]: unit["label"] for unit in todo}
    for key, entry in _map(_compute_unit, todo, workers):
        cache.store(key, entry)
        cache.computed.append(labels[key])
        entries[key] = entry
    return entries


def _member_rows(job: dict) -> tuple:
    """One language: every configuration's rows, its comparisons, and the arrays they rest on (for the pooled rows).

    The bootstrap resamples are drawn once over the union of every language's
    test pairs (by id: the test sets are translations of the same pairs) and
    each language reads its own pairs' columns, so that resample ``r`` is the
    same draw of pairs in every language and language means can be resampled
    jointly (:func:`pooled_rows`). Each member's part of the work is an entry
    computed beforehand (:func:`member_entry`, in ``job["entries"]``).
    """
    lang, metrics = job["lang"], job["metrics"]
    floored = [name for name in FLOORED if name in metrics]
    rows, kept = [], {}
    for key, members in job["configurations"].items():
        entries = [job["entries"][_entry_key(job, member, lang)] for member in members]
        for c, condition in enumerate(job["conditions"]):
            invalid = sum(not member.valid[lang][condition] for member in members)
            for m, name in enumerate(metrics):
                values = np.array([entry["values"][c, m] for entry in entries])  # (S,)
                resampled = np.stack([entry["resampled"][c, m] for entry in entries], axis=1)  # (R, S)
                seed_floors = (np.array([entry["floors"][c, floored.index(name)] for entry in entries])
                               if name in floored else None)  # (S,)
                floor = float(np.mean(seed_floors)) if seed_floors is not None else None
                row = _row(job, key, members, lang, condition, name, values, resampled, invalid, floor)
                rows.append(row)
                rows.extend({**{k: row[k] for k in ("head", "layers", "lower_layer", "kind", "seeds", "learned_seeds",
                                                    "lang", "condition", "metric")},
                             "seed": member.seed, "value": float(value), "invalid_seeds": int(not member.valid[lang][condition])}
                            for member, value in zip(members, values))
                kept[(key, condition, name)] = (values, resampled, row, seed_floors)
    return rows, _comparisons(job, kept, lang), kept


def _row(job, key, members, lang, condition, name, values, resampled, invalid, floor) -> dict:
    """The seed-mean row of one configuration, language, condition and metric."""
    return {"head": key[0], "layers": layers_text(key), "lower_layer": lower_layer(key, job["last"]),
            "kind": job["kinds"][key], "seed": "mean", "seeds": len(members),
            "learned_seeds": sum(bool(m.learned["learned"]) for m in members), "invalid_seeds": invalid,
            "lang": lang, "condition": condition, "metric": name,
            **seed_interval(values, resampled, positive=name in NON_NEGATIVE), "noise_floor": floor}


def _comparisons(job: dict, kept: dict, lang: str) -> list:
    """Every comparison of one language (or of the pooled rows) from the arrays of :func:`_member_rows`.

    Besides the comparisons on every seed, two subsets are compared again
    against each reference (reference names with a suffix, their own Holm
    families): ``_learned``, the learned seeds of each side where a side
    learned on some seeds only (:data:`LEARNED_SUFFIX`; conditional on
    learning, a selected subset), and ``_3seeds``, the pre-specified
    comparisons on the first three seeds (:data:`FEW_SEEDS_SUFFIX`; how wide
    the intervals would be with three seeds instead of all).
    """
    metrics, comparisons = job["metrics"], []

    def compare(key, reference, reference_name, condition, reference_condition, name, same_seeds, keep=None,
                reference_keep=None, family=None):
        values, resampled, row, floors = kept[(key, condition, name)]
        ref_values, ref_resampled, ref_row, ref_floors = kept[(reference, reference_condition, name)]
        members, reference_members = job["configurations"][key], job["configurations"][reference]
        keep = np.ones(values.size, dtype=bool) if keep is None else keep  # (S,) the seeds compared
        reference_keep = np.ones(ref_values.size, dtype=bool) if reference_keep is None else reference_keep
        test = paired_seed_test(values[keep], resampled[:, keep], ref_values[reference_keep],
                                ref_resampled[:, reference_keep], same_seeds=same_seeds)
        floor = side = None
        if name in FLOORED:
            side, reference_side = float(np.mean(floors[keep])), float(np.mean(ref_floors[reference_keep]))
            floor = max(side, reference_side)
        learned = (all(m.learned["learned"] for m, kept_seed in zip(members, keep) if kept_seed)
                   and all(m.learned["learned"] for m, kept_seed in zip(reference_members, reference_keep) if kept_seed))
        comparisons.append({
            "head": key[0], "layers": layers_text(key), "lower_layer": row["lower_layer"], "kind": row["kind"],
            "reference": reference_name, "reference_layers": layers_text(reference), "lang": lang,
            "condition": condition, "metric": name, **test, "same_seeds": same_seeds, "noise_floor": floor,
            "beyond_floor": None if floor is None else bool(abs(test["delta"]) > floor),
            # the change minus the change of the floor: what the two sides' sharpness alone would not produce
            "debiased_delta": None if floor is None else test["delta"] - (side - reference_side),
            "family": ("primary" if key in job["primary"] else "grid") + (family or ""),
            # the seeds compared, those with a defined metric (an AUROC is undefined when every prediction is right)
            "seeds": int(np.isfinite(values[keep]).sum()),
            "reference_seeds": int(np.isfinite(ref_values[reference_keep]).sum()), "learned": learned})

    for reference_name, reference in job["references"].items():
        for key, members in job["configurations"].items():
            if key in (reference, CONSTANT) or job["kinds"][key] == "ensemble":  # its members share runs: not tested
                continue
            # late fusion of a reference's own runs: the same runs seed by seed on both sides
            same_seeds = (job["kinds"][key] == "late" and reference[0] == "single" and reference[1][0] in key[1]
                          and [m.seed for m in members] == [m.seed for m in job["configurations"][reference]])
            for condition in job["conditions"]:
                for name in metrics:
                    compare(key, reference, reference_name, condition, condition, name, same_seeds)
    for key in job["primary"]:  # what calibrating does, the same runs before and after
        for condition in job["conditions"]:
            if condition != "uncalibrated":
                for name in [m for m in CALIBRATION_METRICS if m in metrics]:
                    compare(key, key, "uncalibrated", condition, "uncalibrated", name, True)
    if job["late_against_early"]:  # late fusion against early, each at its best lower layer on dev-en: other runs
        late, early = job["late_against_early"]
        for condition in job["conditions"]:
            for name in metrics:
                compare(late, early, "early_fusion", condition, condition, name, False)
    for key in job["primary"]:  # what the bias adds to the temperature: the same runs, fitted on the same set
        for condition, temperature_only in BIAS_AGAINST_TEMPERATURE:
            if condition in job["conditions"] and temperature_only in job["conditions"]:
                for name in [m for m in CALIBRATION_METRICS if m in metrics]:
                    compare(key, key, "temperature", condition, temperature_only, name, True)
    learned_seeds = {key: np.array([bool(m.learned["learned"]) for m in members])
                     for key, members in job["configurations"].items()}
    for reference_name, reference in job["references"].items():
        for key in job["configurations"]:  # sensitivity: each side on its learned seeds, where a side is partial
            if key in (reference, CONSTANT) or job["kinds"][key] != "trained":
                continue
            keep, reference_keep = learned_seeds[key], learned_seeds[reference]
            if keep.all() and reference_keep.all() or keep.sum() < 2 or reference_keep.sum() < 2:
                continue  # nothing to redo, or a side without two learned seeds to compare
            for condition in job["conditions"]:
                for name in metrics:
                    compare(key, reference, reference_name + LEARNED_SUFFIX, condition, condition, name, False, keep,
                            reference_keep, LEARNED_SUFFIX)
        for key in job["primary"]:  # the same comparisons on the first three seeds: the interval widths of 3 seeds
            seeds = [m.seed for m in job["configurations"][key]]
            reference_seeds = [m.seed for m in job["configurations"][reference]]
            if key in (reference, CONSTANT) or len(seeds) <= FEW_SEEDS or len(reference_seeds) <= FEW_SEEDS:
                continue
            same_seeds = (job["kinds"][key] == "late" and reference[0] == "single" and reference[1][0] in key[1]
                          and seeds == reference_seeds)
            keep = np.isin(seeds, sorted(seeds)[:FEW_SEEDS])
            reference_keep = np.isin(reference_seeds, sorted(reference_seeds)[:FEW_SEEDS])
            for condition in job["conditions"]:
                for name in metrics:
                    compare(key, reference, reference_name + FEW_SEEDS_SUFFIX, condition, condition, name, same_seeds,
                            keep, reference_keep, FEW_SEEDS_SUFFIX)
    return comparisons


def pooled_rows(job: dict, kept_by_lang: dict) -> tuple:
    """Rows and comparisons of the mean over the non-English languages (``lang`` is ``POOLED``).

    Per seed, a metric's value is the mean of its per-language values, and
    each bootstrap resample's the mean of that resample's per-language values:
    the resamples are joint draws of test pairs (:func:`_member_rows`), so the
    interval accounts for the languages sharing their pairs. The noise floor
    is the mean of the languages' floors; ``invalid_seeds`` counts
    anti-informative fits over seeds and languages.
    """
    languages = [lang for lang in kept_by_lang if lang != "en"]
    if not languages:
        return [], []
    rows, kept = [], {}
    for key, condition, name in kept_by_lang[languages[0]]:
        entries = [kept_by_lang[lang][(key, condition, name)] for lang in languages]
        values = np.mean([entry[0] for entry in entries], axis=0)  # (S,)
        resampled = np.mean([entry[1] for entry in entries], axis=0)  # (R, S)
        seed_floors = None if entries[0][3] is None else np.mean([entry[3] for entry in entries], axis=0)  # (S,)
        row = _row(job, key, job["configurations"][key], POOLED, condition, name, values, resampled,
                   sum(entry[2]["invalid_seeds"] for entry in entries),
                   None if seed_floors is None else float(np.mean(seed_floors)))
        rows.append(row)
        rows.extend({**{k: row[k] for k in ("head", "layers", "lower_layer", "kind", "seeds", "learned_seeds", "lang",
                                            "condition", "metric")}, "seed": member.seed, "value": float(value)}
                    for member, value in zip(job["configurations"][key], values))
        kept[(key, condition, name)] = (values, resampled, row, seed_floors)
    return rows, _comparisons(job, kept, POOLED)


def build_report(config: ReportConfig, log: Callable[[str], None] = print) -> dict:
    """Every configuration's metrics with seed-level intervals, and paired tests against the references; pure data."""
    config.validate()
    plan, configurations, status, conditions, notes = load_sweep(Path(config.plan))
    last = int(plan["num_hidden_layers"])
    last_key = ("single", (last,))
    if last_key not in configurations:
        raise XfuseError(f"{config.plan}: the last layer's baseline (single on layer {last}) has no finished run; "
                         "a sweep to report on must include it")
    kinds = {key: "trained" for key in configurations}
    first_done = plan["tasks"][status["done"][0]]["name"]
    recipe = plan.get("train_resolved") or recorded_recipe(sweep_paths(Path(config.plan))["results"] / first_done)
    some_member = configurations[last_key][0]
    base_rate = next((m.learned["train_base_rate"] for members in configurations.values() for m in members
                      if "train_base_rate" in m.learned), None)
    if base_rate is None:
        base_rate = train_base_rate(plan, notes)
    cache = EntryCache(config.cache_dir(), log=log)
    late, late_top = _late_configurations(configurations, last, base_rate, conditions, log, cache)
    singles = [key for key in configurations if key[0] == "single"]
    dev_en_loss = {key: float(np.mean([m.dev_en_loss for m in members])) for key, members in configurations.items()}
    best_single = min(singles, key=lambda key: (dev_en_loss[key], key))
    every = dict(configurations)
    for key, members in late.items():
        every[key], kinds[key] = members, "late"
    ensemble = seed_ensemble(configurations[best_single], ENSEMBLE_SIZE, base_rate, conditions, cache)
    if ensemble:  # late fusion's ensembling without its layers: the best single layer's heads, two seeds at a time
        every[("ensemble", best_single[1])], kinds[("ensemble", best_single[1])] = ensemble, "ensemble"
    every[CONSTANT], kinds[CONSTANT] = [constant_member(some_member, base_rate, conditions)], "reference"
    for key in every:
        dev_en_loss.setdefault(key, float(np.mean([m.dev_en_loss for m in every[key]])))
    references = {"last_layer": last_key, "best_single": best_single}
    order = [CONSTANT, last_key] + ([best_single] if best_single != last_key else [])
    ordered = order + sorted((key for key in every if key not in order), key=lambda key: (key[0], key[1]))
    languages = list(some_member.calibrations)
    bins = int(recipe.get("bins", 15))
    best_lower = {}
    for head in FUSION_HEADS + ("late",):
        candidates = [key for key in every if key[0] == head and lower_layer(key, last) is not None]
        if candidates:
            best_lower[head] = min(candidates, key=lambda key: (dev_en_loss[key], key))
    early = [key for head, key in best_lower.items() if head != "late"]
    best_early = min(early, key=lambda key: (dev_en_loss[key], key)) if early else None
    late_against_early = (best_lower["late"], best_early) if best_early and "late" in best_lower else None
    # the pre-specified comparisons: each strategy at its lower layer chosen on dev-en, scalar_mix, late top-k
    primary = list(dict.fromkeys([last_key, best_single] + list(best_lower.values())
                                 + [key for key in every if key[0] == "scalar_mix"] + ([late_top] if late_top else [])))
    union = {}  # every test pair id of every language, in order of first appearance: the joint resampling's space
    for lang in languages:
        union.update(dict.fromkeys(some_member.parts[f"test-{lang}"]["ids"].tolist()))
    column_of = {pair: index for index, pair in enumerate(union)}
    jobs = []
    for number, lang in enumerate(languages):
        reference_ids = some_member.parts[f"test-{lang}"]["ids"]
        for key in ordered:
            for member in every[key]:
                if not np.array_equal(member.parts[f"test-{lang}"]["ids"], reference_ids):
                    raise XfuseError(f"{key[0]} on layers {list(key[1])} (seed {member.seed}): test-{lang} examples "
                                     "differ from the baseline's; were they trained on other features?")
        jobs.append(dict(lang=lang, configurations={key: every[key] for key in ordered}, kinds=kinds,
                         references=references, last=last, conditions=conditions, metrics=tuple(config.metrics),
                         n_resamples=int(config.n_resamples), seed=config.seed, floor_seed=config.seed + number,
                         bins=bins, union_size=len(union), columns=np.array([column_of[pair] for pair in
                                                                             reference_ids.tolist()]),
                         floor_simulations=int(config.floor_simulations), primary=primary,
                         late_against_early=late_against_early))
    shown = [last_key, best_single] + [key for key in best_lower.values() if key[0] != "late"]
    few_shot_keys = list(dict.fromkeys(shown)) if config.few_shot_draws and "ece" in config.metrics else []
    units = [_member_unit(job, key, member) for job in jobs for key in ordered for member in every[key]]
    units += [unit for key in few_shot_keys for member in configurations[key]
              for unit in _few_shot_units(member, key, languages, config, bins)]
    entries = compute_entries(units, cache, config.workers, log)
    log(f"report: {len(cache.computed)} entries computed, {len(cache.reused)} read from the cache"
        + (f" ({cache.folder})" if cache.folder else " (no cache)"))
    rows, comparisons, kept_by_lang = [], [], {}
    for job in jobs:
        language_rows, language_comparisons, kept = _member_rows(dict(job, entries=entries))
        rows.extend(language_rows)
        comparisons.extend(language_comparisons)
        kept_by_lang[job["lang"]] = kept
        log(f"report: {job['lang']} done ({len(ordered)} configurations)")
    pooled, pooled_comparisons = pooled_rows(jobs[0], kept_by_lang)
    del kept_by_lang
    rows.extend(pooled)
    comparisons.extend(pooled_comparisons)
    families = {}
    for index, row in enumerate(comparisons):
        row["p_holm"], row["significant"] = None, False
        row["low_adjusted"] = row["high_adjusted"] = row["family_size"] = None
        if row["example_only"] or not np.isfinite(row["p_value"]):
            continue  # a side with one seed (or an undefined metric): no seed-level test
        if row["metric"] in CALIBRATION_METRICS and not row["learned"]:
            continue  # calibration of a run at the prior is calibration by construction: not tested
        is_pooled = row["lang"] == POOLED  # the mean outside English: its own families, beside the per-language ones
        families.setdefault((is_pooled, row["family"], row["reference"], row["metric"], row["condition"]),
                            []).append(index)
    for positions in families.values():
        for position, adjusted in zip(positions, holm([comparisons[i]["p_value"] for i in positions])):
            comparisons[position]["p_holm"] = float(adjusted)
            comparisons[position]["significant"] = bool(adjusted < config.alpha)
            row = comparisons[position]
            row["low_adjusted"], row["high_adjusted"] = bonferroni_interval(row["delta"], row["se"], row["dof"],
                                                                            len(positions), config.alpha)
            row["family_size"] = len(positions)
    equivalence = {}  # late against early fusion, accuracy: TOST, Holm over the languages (and the mean apart)
    for index, row in enumerate(comparisons):
        row["equivalence_p"] = row["equivalence_p_holm"] = row["equivalent"] = None
        if row["reference"] == "early_fusion" and row["metric"] == "accuracy" and row["p_holm"] is not None:
            row["equivalence_p"] = equivalence_test(row["delta"], row["se"], row["dof"], config.equivalence_margin)
            equivalence.setdefault((row["lang"] == POOLED, row["condition"]), []).append(index)
    for positions in equivalence.values():
        for position, adjusted in zip(positions, holm([comparisons[i]["equivalence_p"] for i in positions])):
            comparisons[position]["equivalence_p_holm"] = float(adjusted)
            comparisons[position]["equivalent"] = bool(adjusted < config.alpha)
    few_shot = {key: few_shot_table(configurations[key], languages, config, bins, entries) for key in few_shot_keys}
    if few_shot:
        log(f"report: few-shot temperature scaling done ({len(few_shot)} configurations)")
    reliability = {}
    for lang in languages:
        for key in dict.fromkeys([last_key, best_single] + list(best_lower.values())):
            confidence, correct = zip(*(top_label(logit_difference_probabilities(m.parts[f"test-{lang}"]["logits"],
                                                                                 1.0, 0.0),
                                                  m.parts[f"test-{lang}"]["labels"]) for m in every[key]))
            reliability[(key, lang)] = (np.concatenate(confidence), np.concatenate(correct))
    positive_rate = {(key, lang): float(np.mean([predicted_class(logit_difference_probabilities(
        m.parts[f"test-{lang}"]["logits"], 1.0, 0.0)[:, 1]).mean() for m in every[key]]))
        for key in ordered for lang in languages}  # uncalibrated, mean over seeds
    not_learned = {key: [m.seed for m in every[key] if not m.learned["learned"]] for key in ordered
                   if key != CONSTANT and not all(m.learned["learned"] for m in every[key])}
    from xfuse.report.provenance import provenance

    return {"config": dataclasses.asdict(config), "plan": plan, "status": status, "rows": rows,
            "comparisons": comparisons, "index": {_row_key(row): row for row in rows if row["seed"] == "mean"},
            "comparison_index": {_comparison_key(row): row for row in comparisons},
            "conditions": conditions, "few_shot": few_shot, "notes": notes,
            "provenance": provenance(plan, Path(config.plan), every), "languages": languages,
            "last": last, "baseline": last_key, "best_single": best_single, "references": references,
            "constant": CONSTANT, "base_rate": base_rate, "configurations": ordered, "kinds": kinds,
            "late_top": late_top, "best_lower": best_lower, "late_against_early": late_against_early,
            "primary": primary, "recipe": recipe, "reliability": reliability, "bins": bins,
            "not_learned": not_learned, "positive_rate": positive_rate, "dev_en_loss": {key: dev_en_loss[key] for key in ordered},
            "temperatures": {key: float(np.mean([m.zero_shot_temperature for m in every[key]])) for key in ordered},
            "cache": {"computed": cache.computed, "reused": cache.reused, "notices": cache.notices}}


def _map(function, jobs: list, workers: int):
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(function, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
    else:
        yield from map(function, jobs)


def few_shot_entry(dev: dict, test: dict, ks: list, draws: int, seed: int, bins: int) -> dict:
    """One member's few-shot temperature scaling on one language (:mod:`xfuse.calibration.fewshot`): per k, the
    draws' mean and standard deviation of the test ECE and their mean temperature."""
    result = few_shot_ts(dev["logits"], dev["labels"], test["logits"], test["labels"], ks=ks, draws=draws, seed=seed,
                         metrics=("ece",), bins=bins)
    ordered = sorted(result)
    return {"ks": np.array(ordered, dtype=np.int64),
            "summary": np.array([[result[k]["ece"]["mean"], result[k]["ece"]["std"], result[k]["temperature"]["mean"]]
                                 for k in ordered]).reshape(len(ordered), 3)}


def _few_shot_key(member, lang: str, config: "ReportConfig", bins: int) -> tuple:
    dev, test = member.parts[f"dev-{lang}"], member.parts[f"test-{lang}"]
    usable = [k for k in config.few_shot_ks if k < len(dev["labels"])]  # a k of the whole dev set is the oracle
    return content_key("few-shot", dev["logits"], dev["labels"], test["logits"], test["labels"], usable,
                       config.few_shot_draws, config.seed, bins), usable


def _few_shot_units(member, key: tuple, languages: list, config: "ReportConfig", bins: int) -> list:
    units = []
    for lang in languages:
        entry_key, usable = _few_shot_key(member, lang, config, bins)
        units.append({"kind": "few-shot", "key": entry_key, "label": (key, member.seed, lang, "few-shot"),
                      "dev": member.parts[f"dev-{lang}"], "test": member.parts[f"test-{lang}"], "ks": usable,
                      "draws": config.few_shot_draws, "seed": config.seed, "bins": bins})
    return units


def _member_unit(job: dict, key: tuple, member) -> dict:
    lang = job["lang"]
    return {"kind": "member", "key": _entry_key(job, member, lang), "label": (key, member.seed, lang),
            "part": member.parts[f"test-{lang}"], "maps": member.calibrations[lang], "conditions": job["conditions"],
            "metrics": job["metrics"], "bins": job["bins"], "union_size": job["union_size"],
            "n_resamples": job["n_resamples"], "seed": job["seed"], "columns": job["columns"],
            "floor_simulations": job["floor_simulations"], "floor_seed": job["floor_seed"] + member.seed}


def few_shot_table(members: list, languages: list, config: "ReportConfig", bins: int, entries: Optional[dict] = None) -> dict:
    """lang -> k -> ECE of few-shot temperature scaling (:mod:`xfuse.calibration.fewshot`), averaged over seeds.

    For each seed the draws' mean and standard deviation are taken; the table
    holds their means over seeds (``mean``, ``std``) and the mean temperature.
    A k not below the size of a language's dev set is left out for it.
    ``entries`` holds the members' :func:`few_shot_entry` by key (computed here when absent).
    """
    entries = entries if entries is not None else {}
    table = {}
    for lang in languages:
        per_k = {}
        for member in members:
            entry_key, usable = _few_shot_key(member, lang, config, bins)
            entry = entries.get(entry_key)
            if entry is None:
                entry = few_shot_entry(member.parts[f"dev-{lang}"], member.parts[f"test-{lang}"], usable,
                                       config.few_shot_draws, config.seed, bins)
            for k, (mean, std, temperature) in zip(entry["ks"].tolist(), entry["summary"]):
                per_k.setdefault(k, []).append((float(mean), float(std), float(temperature)))
        table[lang] = {k: {"mean": float(np.mean([v[0] for v in values])), "std": float(np.mean([v[1] for v in values])),
                           "temperature": float(np.mean([v[2] for v in values]))} for k, values in per_k.items()}
    return table


def _row_key(row: dict) -> tuple:
    return row["head"], row["layers"], row["lang"], row["condition"], row["metric"]


def _comparison_key(row: dict) -> tuple:
    return row["reference"], row["head"], row["layers"], row["lang"], row["condition"], row["metric"]


def lookup(tables: dict, key: tuple, lang: str, condition: str, metric: str) -> dict:
    """The seed-mean row of one configuration, language, condition and metric."""
    return tables["index"][(key[0], layers_text(key), lang, condition, metric)]


def comparison(tables: dict, reference: str, key: tuple, lang: str, condition: str, metric: str) -> dict:
    """The comparison of a configuration with a reference (``last_layer`` or ``best_single``)."""
    return tables["comparison_index"][(reference, key[0], layers_text(key), lang, condition, metric)]


def is_learned(tables: dict, key: tuple) -> bool:
    return key not in tables["not_learned"]


def stability_table(tables: dict) -> dict:
    """head -> layer (a single head's layer, a fusion's lower layer; () for the others) -> (seeds learned, seeds)."""
    table = {}
    for key in tables["configurations"]:
        if key == CONSTANT or tables["kinds"][key] == "ensemble":
            continue
        row = tables["index"][(key[0], "_".join(map(str, key[1])), tables["languages"][0], "uncalibrated",
                               tables["config"]["metrics"][0])]
        layer = row["lower_layer"] if row["lower_layer"] is not None else "_".join(map(str, key[1]))
        table.setdefault(key[0], {})[layer] = (row["learned_seeds"], row["seeds"])
    return table
