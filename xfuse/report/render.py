"""The report's files: ``results.csv``, ``comparisons.csv``, ``report.md``, ``figures/``, written atomically.

Everything here formats what :func:`xfuse.report.tables.build_report` computed; the
findings come from :mod:`xfuse.report.findings`, the figures from :mod:`xfuse.report.figures`.

Usage::

    write_report(build_report(ReportConfig(plan="sweeps/e5/plan.json")), Path("sweeps/e5/report"))
"""

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from xfuse import __version__
from xfuse.report.figures import CONDITION_LABELS, METRIC_LABELS, save_figures
from xfuse.report.findings import findings, has_pooled, label
from xfuse.report.tables import CONSTANT, POOLED, comparison, is_learned, lookup, stability_table

ROW_COLUMNS = ("head", "layers", "kind", "lower_layer", "seed", "seeds", "learned_seeds", "invalid_seeds", "lang",
               "condition", "metric", "value", "low", "high", "se", "dof", "seed_se", "example_se", "noise_floor")
COMPARISON_COLUMNS = ("head", "layers", "kind", "lower_layer", "reference", "reference_layers", "lang", "condition",
                      "metric", "family", "delta", "low", "high", "se", "dof", "p_value", "p_holm", "significant",
                      "family_size", "low_adjusted", "high_adjusted", "equivalence_p", "equivalence_p_holm",
                      "equivalent", "example_only", "same_seeds", "seeds",
                      "reference_seeds", "noise_floor", "beyond_floor", "debiased_delta", "learned")
TABLE_METRICS = ("accuracy", "ece", "signed_calibration_error", "smooth_ece", "brier", "nll", "auroc", "aurc")


def to_csv(rows: list, columns: tuple) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _csv_value(row.get(column)) for column in columns})
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_report(tables: dict, out: Path, log: Callable[[str], None] = print) -> Path:
    """Write the report's files into ``out``, replacing an older report only once the new one is whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "results.csv").write_text(to_csv(tables["rows"], ROW_COLUMNS))
        (staging / "comparisons.csv").write_text(to_csv(tables["comparisons"], COMPARISON_COLUMNS))
        figures = save_figures(tables, staging / "figures")
        (staging / "report.md").write_text(render_markdown(tables, figures))
        resolved = {"report": tables["config"], "plan_fingerprint": tables["plan"]["fingerprint"],
                    "xfuse_version": __version__}
        (staging / "report_config.json").write_text(json.dumps(resolved, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out / 'report.md'}, {out / 'results.csv'}, {out / 'comparisons.csv'} and {len(figures)} figures")
    return out


def _cell(row: dict, digits: int = 3) -> str:
    mark = " †" if row.get("invalid_seeds") else ""
    return f"{row['value']:.{digits}f} [{row['low']:.{digits}f}, {row['high']:.{digits}f}]{mark}"


def _ece_cell(row: dict) -> str:
    return f"{_cell(row)} (floor {row['noise_floor']:.3f})" if row.get("noise_floor") is not None else _cell(row)


def _delta_cell(row: dict, digits: int = 3) -> str:
    mark = " *" if row["significant"] else ""
    if row["significant"] and row.get("beyond_floor") is False:
        mark += " (below floor)"
    return f"{row['delta']:+.{digits}f} [{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]{mark}"


def _table(header: list, body: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(map(str, line)) + " |" for line in body] + [""]


def _name(tables: dict, key: tuple) -> str:
    text = label(key)
    if key == tables["baseline"]:
        text += " (last layer)"
    if key == tables["best_single"]:
        text += " (best single, dev-en)"
    return text + ("" if key == CONSTANT or is_learned(tables, key) else " ‡")


def render_markdown(tables: dict, figures: list) -> str:
    """The Markdown report; ``figures`` are (file name, caption) pairs."""
    plan, config, status = tables["plan"], tables["config"], tables["status"]
    metrics = [m for m in TABLE_METRICS if m in config["metrics"]]
    languages, last = tables["languages"], tables["last"]
    rows_of = languages + ([POOLED] if has_pooled(tables) else [])  # each language, then the mean outside English
    extract = plan["extract"]
    seeds = sorted({task["seed"] for task in plan["tasks"]})
    recipe = tables["recipe"]
    lines = [
        "# xfuse report", "",
        f"Made by xfuse {__version__} from a sweep of {len(plan['tasks'])} tasks: {len(status['done'])} done, "
        f"{len(status['failed'])} failed, {len(status['missing'])} missing.",
        f"Encoder `{extract['encoder']}` ({last} layers; hidden states 0..{last}, 0 the embedding output), "
        f"max length {extract['max_length']}, features stored as {extract['dtype']}; seeds {seeds}; "
        f"training settings {json.dumps(recipe, sort_keys=True)}.", "",
        "**How to read the numbers.** Seeds are the unit of inference. Each value is the mean over a configuration's "
        "seeds with a 95% interval that adds the seed-to-seed variance to the test-example bootstrap variance of the "
        f"seed mean ({config['n_resamples']} resamples, the same for every configuration of a language), counting "
        "their seed-by-example interaction once, and uses a t quantile with Welch-Satterthwaite degrees of freedom; "
        "it contains its point estimate, and for metrics that cannot be negative (ECEs, Brier, NLL, risk-coverage "
        "area) its lower end is truncated at 0 (`results.csv` holds each seed's value beside it, and both standard "
        "errors). Comparisons are paired on the test examples, with seeds as independent replicates of each "
        "configuration (per-seed differences where both sides are the same runs: late fusion against its own "
        "layer, a calibration condition against none). A seed fixes the batch order for every configuration, so "
        "two configurations' runs of the same seed may share their fate (which seeds learn repeats across lower "
        "layers); treating them as independent overstates the variance of a difference when they are positively "
        "correlated, which makes these tests conservative rather than liberal. `*` marks a change significant at "
        f"{config['alpha']} after Holm's correction within each reference, metric and condition, separately over "
        "the pre-specified comparisons (each strategy at its lower layer chosen on English dev, scalar_mix, the "
        "late top-k) and over the rest of the grid; calibration metrics are tested only where both sides learned, "
        "and a comparison where a side has a single seed is not tested (`xfuse.report.statistics`). Beside each binned "
        "ECE stands its **noise floor**: the mean ECE of a perfectly calibrated model with the same confidences and "
        f"number of test examples ({config['floor_simulations']} simulations per seed); a significant ECE change "
        "smaller than the floor of either side is marked \"below floor\" and is not called a calibration "
        "difference; `comparisons.csv` also gives each ECE change minus the change of the floor "
        "(`debiased_delta`), since the floor grows as confidences spread. Each tested comparison also has an interval "
        "adjusted within its Holm family (Bonferroni, simultaneous 95%: `low_adjusted`, `high_adjusted`, "
        "`family_size`); it contains 0 wherever the change is not significant, and the findings quote it for every "
        "null as the changes the study rules out. Comparisons whose reference ends in `_learned` are redone on the "
        "learned seeds of each side where a side learned on some seeds only (conditional on learning, a selected "
        "subset; their own Holm families); those ending in `_3seeds` redo the pre-specified comparisons on the first "
        "three seeds, to show how much the extra seeds narrow the intervals. `‡` marks a configuration that did not beat the prior on English dev on every seed: kept in "
        "the tables, left out of calibration findings. `†` marks a value to which a seed contributes an "
        "anti-informative fit (its logits rank the classes the wrong way round on the dev set the calibrator was "
        "fitted on): a clamp, not a calibration.", "",
        "Reference rows: the **constant** predictor at the English training base rate "
        f"({tables['base_rate']:.4f}; the accuracy any learned head must beat, and well calibrated by "
        f"construction; the calibrators leave it as it is), the **last layer** ({label(tables['baseline'])}), and the **best single layer chosen on "
        f"English dev** ({label(tables['best_single'])}, lowest dev-en loss). Late fusion averages the class "
        "probabilities of `single` heads (the last layer with each lower one; and the best k layers by dev-en "
        "loss, k chosen by the fused dev-en loss), from their saved predictions, with no new training.", "",
        f"Rows `{POOLED}`: the mean over the non-English test languages, the primary endpoint of each comparison. "
        "Per seed it is the mean of the per-language values; the bootstrap resamples are joint draws of test pairs "
        "by id (the languages' test sets are translations of the same pairs), so its interval accounts for the "
        "languages sharing them; its comparisons form their own Holm families; its noise floor is the mean of the "
        "languages' floors.", "",
    ]
    lines += [f"- {note}" for note in tables["notes"]] + ([""] if tables["notes"] else [])
    lines += ["## Findings", "", "Generated from the tables below.", ""] + findings(tables) + [""]
    lines += ["## Configurations that did not learn", ""]
    if tables["not_learned"]:
        lines += _table(["configuration", "seeds not learned", "of", "mean dev-en loss"],
                        [[label(key), ", ".join(map(str, seeds)),
                          lookup(tables, key, languages[0], "uncalibrated", config["metrics"][0])["seeds"],
                          f"{tables['dev_en_loss'][key]:.4f}"] for key, seeds in tables["not_learned"].items()])
    else:
        lines += ["None: every run beat the prior on English dev.", ""]
    lines += render_stability(tables)
    best = tables["best_lower"]
    shown = [CONSTANT, tables["baseline"], tables["best_single"]] + list(best.values()) + \
        [key for key in tables["configurations"] if key[0] in ("scalar_mix", "ensemble")] + \
        ([tables["late_top"]] if tables["late_top"] else [])
    shown = list(dict.fromkeys(shown))
    lines += ["## Reference rows and each strategy at its best lower layer", "",
              "Lower layers chosen on English dev (lowest dev-en loss, mean over seeds), never on test:", ""]
    lines += _table(["configuration", "dev-en loss", "zero-shot temperature"],
                    [[_name(tables, key), f"{tables['dev_en_loss'][key]:.4f}", f"{tables['temperatures'][key]:.3f}"]
                     for key in shown if key != CONSTANT])
    for condition in tables["conditions"]:
        lines += [f"### {CONDITION_LABELS[condition].capitalize()}", ""]
        body = [[_name(tables, key), lang] + [_ece_cell(lookup(tables, key, lang, condition, m)) for m in metrics]
                for key in shown for lang in rows_of]
        lines += _table(["configuration", "lang"] + [METRIC_LABELS[m] for m in metrics], body)
    lines += ["## Brier score's calibration and refinement parts", "",
              f"Uncalibrated; calibration (reliability over {tables['bins']} equal-width bins of P(y = 1)) plus "
              "refinement equals the Brier score.", ""]
    if {"brier_reliability", "brier_refinement"} <= set(config["metrics"]):
        lines += _table(["configuration", "lang", "Brier", "calibration part", "refinement part"],
                        [[_name(tables, key), lang] + [_cell(lookup(tables, key, lang, "uncalibrated", m), 4)
                                                       for m in ("brier", "brier_reliability", "brier_refinement")]
                         for key in shown for lang in languages])
    if tables["few_shot"]:
        ks = sorted({k for table in tables["few_shot"].values() for per_k in table.values() for k in per_k})
        lines += ["## Few-shot temperature scaling", "",
                  f"ECE after a temperature fitted on k labelled examples of the language's own dev set "
                  f"({config['few_shot_draws']} stratified draws per k; mean over draws, then over seeds, "
                  "with the draws' standard deviation), between the zero-shot temperature (English dev) and the "
                  "oracle (all of the language's dev set).", ""]
        body = []
        for key, table in tables["few_shot"].items():
            for lang in languages:
                body.append([_name(tables, key), lang, f"{lookup(tables, key, lang, 'zero_shot_ts', 'ece')['value']:.3f}"]
                            + [f"{table[lang][k]['mean']:.3f} ± {table[lang][k]['std']:.3f}" if k in table[lang] else "-"
                               for k in ks]
                            + [f"{lookup(tables, key, lang, 'oracle_ts', 'ece')['value']:.3f}"])
        lines += _table(["configuration", "lang", "zero-shot TS"] + [f"k = {k}" for k in ks] + ["oracle TS"], body)
    for reference, title in (("best_single", "the best single layer (chosen on English dev)"),
                             ("last_layer", "the last layer")):
        lines += [f"## Changes against {title}", ""]
        compared = [key for key in shown if key not in (CONSTANT, tables["references"][reference])
                    and tables["kinds"][key] != "ensemble"]  # the seed ensemble is described, not tested
        for condition in tables["conditions"]:
            lines += [f"### {CONDITION_LABELS[condition].capitalize()}, against {title}", ""]
            body = [[_name(tables, key), lang] + [_delta_cell(comparison(tables, reference, key, lang, condition, m))
                                                  for m in metrics]
                    for key in compared for lang in rows_of]
            lines += _table(["configuration", "lang"] + [f"change in {METRIC_LABELS[m]}" for m in metrics], body) \
                if body else ["No other configuration has finished.", ""]
    lines += ["### Significant changes across the whole grid", "",
              "Counts over the tested comparisons of every configuration and language (for calibration metrics, those "
              "where both sides learned); "
              "for accuracy and AUROC an improvement is a rise, for every other metric except the signed error a "
              "fall.", ""]
    body = []
    for reference in ("best_single", "last_layer"):
        for metric in metrics:
            for condition in tables["conditions"]:
                rows = [row for row in tables["comparisons"] if row["reference"] == reference and row["metric"] == metric
                        and row["condition"] == condition and row["p_holm"] is not None  # the tested ones
                        and row["lang"] != POOLED]
                up = sum(row["significant"] and row["delta"] > 0 for row in rows)
                down = sum(row["significant"] and row["delta"] < 0 for row in rows)
                body.append([reference.replace("_", " "), METRIC_LABELS[metric], CONDITION_LABELS[condition], len(rows),
                             up, down])
    lines += _table(["against", "metric", "condition", "comparisons tested", "significantly higher",
                     "significantly lower"],
                    body)
    lines += ["## Across layers", "", "Mean over seeds, uncalibrated; `*`: significantly different from the best single "
              "layer after Holm; `‡`: not learned on every seed.", ""]
    for head in ("single", "dlfa", "aif", "concat", "mean", "late"):
        keys = [key for key in tables["configurations"] if key[0] == head and key[1] and
                (head == "single" and len(key[1]) == 1 or head != "single" and len(key[1]) == 2 and key[1][1] == last)]
        if len(keys) < 2:
            continue
        for metric in [m for m in ("accuracy", "ece", "signed_calibration_error") if m in metrics]:
            body = []
            for key in sorted(keys, key=lambda k: k[1][0]):
                cells = []
                for lang in languages:
                    row = lookup(tables, key, lang, "uncalibrated", metric)
                    significant = key != tables["best_single"] and \
                        comparison(tables, "best_single", key, lang, "uncalibrated", metric)["significant"]
                    cells.append(f"{row['value']:.3f}{' *' if significant else ''}")
                body.append([f"{key[1][0]}{'' if is_learned(tables, key) else ' ‡'}"] + cells)
            lines += [f"### {head}: {METRIC_LABELS[metric]}", ""] + \
                _table(["layer" if head == "single" else "lower layer"] + languages, body)
    lines += render_alignment(tables)
    lines += ["## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}](figures/{name})", "", f"*{caption}.*", ""]
    lines += render_provenance(tables["provenance"])
    return "\n".join(lines).rstrip() + "\n"


def render_stability(tables: dict) -> list:
    """The stability table: for each head and (lower) layer, on how many of its seeds the head learned."""
    table = stability_table(tables)
    layers = sorted({layer for per_head in table.values() for layer in per_head if isinstance(layer, int)})
    lines = ["## Stability: seeds on which the head learned", "",
             "Seeds that beat the prior on English dev, of the configuration's seeds (`learned`, "
             "`xfuse/heads/diagnostics.py`), by the layer a `single` head reads or the lower layer a fusion adds to the "
             f"last ({tables['last']}); late fusion is learned on a seed only when both of its runs are. A "
             "configuration not learned on every seed is left out of the calibration findings.", ""]
    body = []
    for head, per_head in table.items():
        if any(isinstance(layer, int) for layer in per_head):
            body.append([head] + [f"{per_head[layer][0]}/{per_head[layer][1]}" if layer in per_head else ""
                                  for layer in layers])
    if body:
        lines += _table(["head"] + [str(layer) for layer in layers], body)
    others = [f"{head} [{layer}]: {learned}/{seeds}" for head, per_head in table.items() for layer, (learned, seeds)
              in per_head.items() if not isinstance(layer, int)]
    if others:
        lines += ["Other configurations: " + "; ".join(others) + ".", ""]
    return lines


def _rho(value: dict) -> str:
    return "n/a" if value["rho"] is None else f"{value['rho']:+.2f}"


def render_alignment(tables: dict) -> list:
    """The section setting each layer's cross-lingual alignment beside the heads' results (xfuse.report.alignment)."""
    from xfuse.report.alignment import MEASURES, QUANTITY_LABELS  # noqa: the section's data comes from there

    lines = ["## Alignment and calibration", ""]
    section = tables.get("alignment")
    if not section or "per_layer" not in section:
        reason = section["source"] if section else "the report was built without it (xfuse.report.alignment.add_alignment)"
        return lines + [f"Not there: {reason}. `xfuse align` measures it; `xfuse report --alignment CSV` shows it.", ""]
    languages = section["languages"]
    lines += [f"Alignment of each layer with English ({section['source']}; `xfuse align`, measures in "
              "`xfuse/features/align.py`): debiased linear CKA and translation retrieval after centring each "
              "language, on the features as a `single` head sees them, beside what the heads did on that layer "
              "(uncalibrated, mean over seeds). Spearman's rho is across layers within each language, only over "
              "configurations that learned on every seed; with at most 13 layers, "
              f"{len(languages)} languages and one encoder it describes, it does not test, and says nothing about "
              "cause.", ""]
    left_out = section["single_layers_left_out"]
    if left_out:
        lines += [f"`single` heads that did not learn on every seed, left out of the correlations: layers "
                  f"{', '.join(map(str, left_out))} (their alignment is in the table, `‡`).", ""]
    if section["fusion_left_out"]:
        lines += ["Fusion configurations left out of the correlations (not learned on every seed, or the last layer "
                  "did not): " + ", ".join(f"{head} {layer}+{tables['last']}" for head, layer in
                                           section["fusion_left_out"]) + ".", ""]
    body = []
    for layer in sorted({entry["layer"] for entry in section["per_layer"]}):
        entries = [entry for entry in section["per_layer"] if entry["layer"] == layer]
        mean = lambda name: np.nanmean([entry.get(name, np.nan) for entry in entries])
        learned = entries[0]["learned"]
        cells = [f"{mean(f'{measure}_{view}'):.3f}" for measure, view in MEASURES]
        cells += ["n/a" if "ece_gap" not in entries[0] else f"{mean(name):+.3f}"
                  for name in ("accuracy_drop", "signed_calibration_error", "ece_gap")]
        body.append([f"{layer}{'' if learned else ' ‡'}"] + cells)
    lines += ["Mean over the target languages:", ""]
    lines += _table(["layer", "debiased CKA", "retrieval (centred)", "single: accuracy drop",
                     "single: confidence - accuracy", "single: ECE - English's"], body)
    body = []
    for row in section["correlations"]:
        cells = [_rho(row["per_language"][lang]) + f" ({row['per_language'][lang]['n']})" for lang in languages]
        summary = "n/a" if row["median"] is None else f"{row['median']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"
        body.append([row["head"], row["measure"].replace("_", " "), QUANTITY_LABELS[row["quantity"]],
                     summary] + cells)
    lines += ["", "Spearman's rho across layers (number of layers in brackets); median [range] over languages:", ""]
    lines += _table(["head", "alignment", "against", "median [range]"] + languages, body)
    return lines + [""]


PROVENANCE_HEADING = "## Provenance"


def render_provenance(facts: dict) -> list:
    """The last section of the report: versions, store, data counts, measured times (these differ between runs)."""
    store = facts["store"]
    fingerprint = (store.get("fingerprint") or "")[:16]
    lines = [PROVENANCE_HEADING, "",
             "Versions: " + ", ".join(f"{name} {version}" for name, version in facts["versions"].items()) + ".",
             f"Features store: encoder `{store['encoder']}` revision `{store['encoder_revision']}`, prefix "
             f"{store['prefix']!r}, max length {store['max_length']}, {store['dtype']}, fingerprint `{fingerprint}`.", ""]
    if facts["store_present"]:
        lines += ["Data, per PAWS-X file (rows kept and dropped):", ""]
        lines += _table(["file", "pairs kept", "NS dropped", "empty dropped", "-1 dropped"],
                        [[f"{f['lang']}/{f['file']}", f["num_pairs"], f["dropped_not_translated"], f["dropped_empty"],
                          f["dropped_unlabelled"]] for f in facts["files"]])
    else:
        lines += [f"The features store ({facts['store_path']}) is not on this machine: its settings above come from "
                  "a result's config.json, and the per-file data counts are not available.", ""]
    leakage = facts.get("leakage")
    if leakage:
        action = "dropped from training" if leakage["policy"] == "drop" else "kept in training"
        lines += [f"Leakage check of the training file against every evaluated file, by content: "
                  f"{leakage['exact_overlaps']} exact sentence overlaps; {leakage['same_family_pairs']} training pairs "
                  f"of an evaluated sentence's source family ({leakage['measure']} >= {leakage['threshold']}), "
                  f"{action}. Per evaluated file:", ""]
        lines += _table(["evaluated file", "same-family training pairs"],
                        [[f"{entry['lang']}/{entry['split']}", entry["pairs"]] for entry in leakage["per_file"].values()])
    if facts.get("processors"):
        mixed = {name: found for name, found in facts["processors_per_configuration"].items() if len(found) > 1}
        lines += ["Processors the trained runs ran on (bits differ between CPU models; `metrics.json`'s `machine`):",
                  ""]
        lines += _table(["processor", "runs"], [[name, count] for name, count in facts["processors"].items()])
        lines += [f"{len(mixed)} of {len(facts['processors_per_configuration'])} configurations have runs on more than "
                  "one processor" + (": " + "; ".join(f"{name} ({len(found)})" for name, found in mixed.items())
                                     if mixed else "") + ".", ""]
    lines += ["Time of each train-heads task (reading features, training, evaluating), as measured by the task:", ""]
    lines += _table(["head", "tasks", "mean s", "total s"],
                    [[head, t["runs"], f"{t['mean']:.1f}", f"{t['total']:.0f}"] for head, t in facts["task_seconds"].items()])
    if facts["timings"]:
        lines += ["Stages, as timed when they ran (`timings.json` beside the plan; a resumed stage has several runs):",
                  ""]
        lines += _table(["stage", "runs", "seconds", "command", "note"],
                        [[stage, len(runs), f"{sum(run['seconds'] for run in runs):.0f}", f"`{runs[-1]['command']}`",
                          "; ".join(run["note"] for run in runs if run.get("note"))]
                         for stage, runs in facts["timings"].items()])
    return lines
