"""``xfuse report``: every result of a sweep in one table, paired tests against the baseline, a Markdown report.

A *configuration* is a head on a layer combination; its seeds are pooled.
For each test language and condition (``uncalibrated``, ``zero_shot_ts``:
the temperature fitted on English dev, ``oracle_ts``: the language's own dev
temperature) and each metric:

- ``value``: the metric averaged over the configuration's seeds;
- ``low``, ``high``: a 95% percentile bootstrap interval of that seed mean,
  resampling the test examples (R resamples, the same examples drawn for
  every seed and every configuration of a language);
- against the baseline (``single`` on the last layer), on the same resamples,
  so the comparison is paired: ``delta = value - baseline value``, its 95%
  interval, and a two-sided p-value from the bootstrap standard error of
  ``delta``, ``p = 2 (1 - Phi(|delta| / sd(delta*)))``;
- ``p_holm``: Holm's step-down adjustment over all comparisons of one
  (metric, condition) family, i.e. every configuration in every language;
  ``significant`` when ``p_holm < alpha``.

Binned ECEs are biased upward on resamples (emptier bins, larger gaps), so a
small ECE's percentile interval can lie above its value; the paired
differences share that bias and largely cancel it.

The "best lower layer" of a fusion head is chosen on English dev, never on
test: the lower layer whose selected epoch has the lowest dev-en loss,
averaged over seeds.

Outputs, in ``<sweep>/report/`` unless told otherwise: ``results.csv`` (one
row per configuration, language, condition and metric), ``report.md``,
``figures/*.png`` (see :mod:`xfuse.figures`) and ``report_config.json``.

Usage::

    tables = build_report(ReportConfig(plan="sweeps/e5/plan.json"))
    write_report(tables, Path("sweeps/e5/report"))
"""

import csv
import dataclasses
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from scipy.stats import norm

from . import __version__
from .calibration import METRICS, metric_value, percentile_interval, resample_counts, resampled_metrics
from .errors import XfuseError
from .fewshot import DEFAULT_KS, few_shot_ts
from .sweep import load_plan, sweep_paths, sweep_status
from .temperature import logit_difference_probabilities
from .train import CONDITIONS

REPORT_METRICS = ("accuracy", "ece", "adaptive_ece", "smooth_ece", "brier", "nll")
FUSION_HEADS = ("dlfa", "aif", "concat", "mean")
CSV_COLUMNS = ("head", "layers", "lower_layer", "seeds", "invalid_seeds", "lang", "condition", "metric", "value", "low",
               "high", "delta", "delta_low", "delta_high", "p_value", "p_holm", "significant")
_LOWER_IS_BETTER = {"accuracy": False}


@dataclass(frozen=True)
class ReportConfig:
    plan: str
    metrics: tuple = REPORT_METRICS
    n_resamples: int = 1000
    seed: int = 0
    alpha: float = 0.05
    workers: int = 1  # languages computed in parallel processes
    few_shot_ks: tuple = DEFAULT_KS  # labelled target-language dev examples of few-shot temperature scaling
    few_shot_draws: int = 100  # draws of each k (0: no few-shot section)

    def validate(self) -> None:
        unknown = [name for name in self.metrics if name not in METRICS]
        if unknown:
            raise XfuseError(f"--metrics: unknown metric {unknown[0]!r}; expected some of {', '.join(METRICS)}")
        if int(self.n_resamples) < 100:
            raise XfuseError(f"--bootstrap: expected at least 100 resamples, got {self.n_resamples}")
        if not 0 < self.alpha < 1:
            raise XfuseError(f"--alpha: expected a level in (0, 1), got {self.alpha}")
        if int(self.workers) < 1:
            raise XfuseError(f"--workers: expected an integer >= 1, got {self.workers}")


@dataclass
class Run:
    head: str
    layers: tuple
    seed: int
    metrics: dict
    predictions: dict  # part name -> {"logits", "labels", "ids"}
    dev_en_loss: float


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in sorted order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def bootstrap_p_value(delta: float, delta_resamples: np.ndarray) -> float:
    """Two-sided p-value of a difference being 0, from its bootstrap standard error (a Wald test).

    ``p = 2 (1 - Phi(|delta| / sd(delta*)))``. Counting resamples beyond 0 instead cannot give a
    p-value below ``2 / (R + 1)``, too coarse for Holm's correction over hundreds of comparisons.
    """
    spread = float(np.std(delta_resamples, ddof=1))
    if spread == 0.0:
        return 1.0 if delta == 0 else 0.0
    return float(2 * norm.sf(abs(delta) / spread))


def load_runs(plan_path: Path) -> tuple:
    """The plan and its finished runs; an error if the baseline has none."""
    plan = load_plan(plan_path)
    results = sweep_paths(plan_path)["results"]
    status = sweep_status(plan_path)
    runs = []
    for index in status["done"]:
        task = plan["tasks"][index]
        folder = results / task["name"]
        metrics = json.loads((folder / "metrics.json").read_text())
        curve = json.loads((folder / "curve.json").read_text())
        with np.load(folder / "predictions.npz") as arrays:
            names = sorted({key.split("/")[0] for key in arrays.files})
            predictions = {name: {field: arrays[f"{name}/{field}"] for field in ("logits", "labels", "ids")}
                           for name in names}
        runs.append(Run(head=task["head"], layers=tuple(task["layers"]), seed=task["seed"], metrics=metrics,
                        predictions=predictions, dev_en_loss=curve[metrics["best_epoch"] - 1]["dev_en_loss"]))
    if not runs:
        raise XfuseError(f"{plan_path}: no finished task yet; run xfuse sweep submit first")
    return plan, runs, status


def _calibration(run: Run, lang: str, condition: str) -> tuple:
    """``(slope, bias)`` of a condition on the logit difference: ``P(y = 1) = sigmoid(slope (z1 - z0) + bias)``.

    Uncalibrated is (1, 0); temperature scaling is (1 / T, 0); temperature
    plus bias is the fitted (a, b) (:mod:`xfuse.temperature`).
    """
    if condition == "uncalibrated":
        return 1.0, 0.0
    if condition in ("zero_shot_ts", "oracle_ts"):
        temperature = (run.metrics["zero_shot_temperature"] if condition == "zero_shot_ts"
                       else run.metrics["languages"][lang]["oracle_temperature"])
        return 1.0 / temperature, 0.0
    fit = (run.metrics["fits"] if condition.startswith("zero_shot") else run.metrics["languages"][lang]["fits"])[condition]
    return fit["slope"], fit["bias"]


def _probabilities(run: Run, lang: str, condition: str) -> np.ndarray:
    return logit_difference_probabilities(run.predictions[f"test-{lang}"]["logits"], *_calibration(run, lang, condition))


def conditions_of(runs: list) -> tuple:
    """The conditions every run reports (results made before temperature plus bias lack those two)."""
    return tuple(condition for condition in CONDITIONS
                 if all(condition in run.metrics["languages"][lang] for run in runs for lang in run.metrics["languages"]))


def _language_rows(job: dict) -> list:
    """The rows of one language: every configuration, condition and metric, with paired comparisons."""
    lang, seeds, baseline_key, metrics, bins = job["lang"], job["seeds"], job["baseline_key"], job["metrics"], job["bins"]
    counts = resample_counts(len(seeds[baseline_key][0][1]), job["n_resamples"], job["seed"])
    rows = []
    for condition in job["conditions"]:
        resampled = {}
        for key in job["ordered"]:
            per_seed = []
            for logits, labels, calibrations, _ in seeds[key]:
                probs = logit_difference_probabilities(logits, *calibrations[condition])
                values = {name: metric_value(name, probs, labels, bins) for name in metrics}
                per_seed.append((values, resampled_metrics(probs, labels, counts, bins, metrics)))
            resampled[key] = {name: (float(np.mean([values[name] for values, _ in per_seed])),
                                     np.mean([samples[name] for _, samples in per_seed], axis=0)) for name in metrics}
        for key in job["ordered"]:
            for name in metrics:
                value, samples = resampled[key][name]
                low, high = percentile_interval(samples)
                row = {"head": key[0], "layers": "_".join(map(str, key[1])), "lower_layer": _lower_layer(key, job["last"]),
                       "seeds": len(seeds[key]), "lang": lang, "condition": condition, "metric": name,
                       "invalid_seeds": sum(not valid[condition] for *_, valid in seeds[key]),
                       "value": value, "low": low, "high": high}
                if key != baseline_key:
                    base_value, base_samples = resampled[baseline_key][name]
                    delta = samples - base_samples
                    row["delta"] = value - base_value
                    row["delta_low"], row["delta_high"] = percentile_interval(delta)
                    row["p_value"] = bootstrap_p_value(row["delta"], delta)
                rows.append(row)
    return rows


def build_report(config: ReportConfig, log: Callable[[str], None] = print) -> dict:
    """Every configuration's metrics with intervals and paired tests against the baseline; pure data."""
    config.validate()
    plan, runs, status = load_runs(Path(config.plan))
    last = int(plan["num_hidden_layers"])
    baseline_key = ("single", (last,))
    configurations = {}
    for run in runs:
        configurations.setdefault((run.head, run.layers), []).append(run)
    if baseline_key not in configurations:
        raise XfuseError(f"{config.plan}: the baseline (single on layer {last}) has no finished run; "
                         "a sweep to report on must include it")
    ordered = sorted(configurations, key=lambda key: (key != baseline_key, key[0], key[1]))
    languages = list(configurations[baseline_key][0].metrics["languages"])
    conditions = conditions_of(runs)
    bins = int(plan["train"].get("bins", 15))
    jobs = []
    for number, lang in enumerate(languages):
        reference = configurations[baseline_key][0].predictions[f"test-{lang}"]
        seeds = {}
        for key in ordered:
            for run in configurations[key]:
                part = run.predictions[f"test-{lang}"]
                if not np.array_equal(part["ids"], reference["ids"]):
                    raise XfuseError(f"{key[0]} on layers {list(key[1])} (seed {run.seed}): test-{lang} examples "
                                     "differ from the baseline's; were they trained on other features?")
                calibrations = {condition: _calibration(run, lang, condition) for condition in conditions}
                valid = {condition: run.metrics["languages"][lang][condition].get("valid", True)
                         for condition in conditions}  # False: an anti-informative fit, a clamp, not a calibration
                seeds.setdefault(key, []).append((part["logits"], part["labels"], calibrations, valid))
        jobs.append(dict(lang=lang, seeds=seeds, ordered=ordered, baseline_key=baseline_key, last=last, conditions=conditions,
                         metrics=tuple(config.metrics), n_resamples=int(config.n_resamples),
                         seed=config.seed + number, bins=bins))
    rows = []
    if config.workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(config.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for job, language_rows in zip(jobs, pool.map(_language_rows, jobs)):
                rows.extend(language_rows)
                log(f"report: {job['lang']} done ({len(ordered)} configurations)")
    else:
        for job in jobs:
            rows.extend(_language_rows(job))
            log(f"report: {job['lang']} done ({len(ordered)} configurations)")
    families = {}
    for position, row in enumerate(rows):
        if "p_value" in row:
            families.setdefault((row["metric"], row["condition"]), []).append(position)
    for positions in families.values():
        for position, adjusted in zip(positions, holm([rows[i]["p_value"] for i in positions])):
            rows[position]["p_holm"] = float(adjusted)
            rows[position]["significant"] = bool(adjusted < config.alpha)
    best_lower = {}
    for head in FUSION_HEADS:
        candidates = [key for key in configurations if key[0] == head and len(key[1]) == 2 and key[1][1] == last]
        if candidates:
            best_lower[head] = min(candidates, key=lambda key: (np.mean([r.dev_en_loss for r in configurations[key]]), key))
    reliability = {}
    for lang in languages:
        for key in {baseline_key, *best_lower.values()}:
            confidence, correct = [], []
            for run in configurations[key]:
                probs = _probabilities(run, lang, "uncalibrated")
                confidence.append(probs.max(axis=1))
                correct.append(probs.argmax(axis=1) == run.predictions[f"test-{lang}"]["labels"])
            reliability[(key, lang)] = (np.concatenate(confidence), np.concatenate(correct).astype(np.float64))
    index = {_row_key(row["head"], row["layers"], row["lang"], row["condition"], row["metric"]): row for row in rows}
    few_shot = {}
    if config.few_shot_draws and "ece" in config.metrics:
        for key in [baseline_key] + list(best_lower.values()):
            few_shot[key] = few_shot_table(configurations[key], languages, config, bins)
        log(f"report: few-shot temperature scaling done ({len(few_shot)} configurations)")
    return {"config": dataclasses.asdict(config), "plan": plan, "status": status, "rows": rows, "index": index,
            "conditions": conditions, "few_shot": few_shot,
            "provenance": provenance(plan, Path(config.plan), runs),
            "languages": languages, "baseline": baseline_key, "configurations": ordered,
            "best_lower": best_lower, "reliability": reliability, "bins": bins,
            "dev_en_loss": {key: float(np.mean([r.dev_en_loss for r in configurations[key]])) for key in ordered},
            "temperatures": {key: float(np.mean([r.metrics["zero_shot_temperature"] for r in configurations[key]]))
                             for key in ordered}}


def few_shot_table(runs: list, languages: list, config: "ReportConfig", bins: int) -> dict:
    """lang -> k -> ECE of few-shot temperature scaling (:mod:`xfuse.fewshot`), averaged over seeds.

    For each seed the draws' mean and standard deviation are taken; the table
    holds their means over seeds (``mean``, ``std``) and the mean temperature.
    A k not below the size of a language's dev set is left out for it.
    """
    table = {}
    for lang in languages:
        per_k = {}
        for run in runs:
            dev, test = run.predictions[f"dev-{lang}"], run.predictions[f"test-{lang}"]
            usable = [k for k in config.few_shot_ks if k < len(dev["labels"])]  # a k of the whole dev set is the oracle
            result = few_shot_ts(dev["logits"], dev["labels"], test["logits"], test["labels"], ks=usable,
                                 draws=config.few_shot_draws, seed=config.seed, metrics=("ece",), bins=bins)
            for k, entry in result.items():
                per_k.setdefault(k, []).append((entry["ece"]["mean"], entry["ece"]["std"], entry["temperature"]["mean"]))
        table[lang] = {k: {"mean": float(np.mean([v[0] for v in values])), "std": float(np.mean([v[1] for v in values])),
                           "temperature": float(np.mean([v[2] for v in values]))} for k, values in per_k.items()}
    return table


def provenance(plan: dict, plan_path: Path, runs: list) -> dict:
    """What made the results: versions, the store's identity, per-file data counts, measured times."""
    import platform

    import scipy
    import torch
    import transformers

    from .features import FeaturePart, FeatureStore

    store = FeatureStore(Path(plan["store"]))
    files, leakage = [], None
    for path in store.part_paths():
        with FeaturePart(path) as part:
            files.append({key: part.attrs[key] for key in ("split", "lang", "num_pairs", "dropped_not_translated",
                                                           "dropped_empty", "dropped_unlabelled")}
                         | {"file": Path(part.attrs["data_file"]).name})
            if "leakage" in part.attrs:
                leakage = json.loads(part.attrs["leakage"])
    order = {"train": 0, "dev": 1, "test": 2}
    files.sort(key=lambda f: (order[f["split"]], f["lang"]))
    seconds = {}
    for run in runs:
        seconds.setdefault(run.head, []).append(run.metrics["seconds"]["total"])
    timings_path = Path(plan_path).parent / "timings.json"
    return {
        "versions": {"xfuse": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        "store": {key: store.settings.get(key) for key in ("encoder", "encoder_revision", "tokenizer_sha256",
                                                           "fingerprint", "prefix", "max_length", "dtype")},
        "files": files,
        "leakage": leakage,
        "task_seconds": {head: {"runs": len(values), "mean": float(np.mean(values)), "total": float(np.sum(values))}
                         for head, values in sorted(seconds.items())},
        "timings": json.loads(timings_path.read_text()) if timings_path.is_file() else {},
    }


def findings(tables: dict) -> list:
    """Plain-language findings, every number taken from the report's rows."""
    languages, metrics = tables["languages"], tables["config"]["metrics"]
    count = len(languages)
    lines = []

    def changes(key, metric, condition):
        return [lookup(tables, key, lang, condition, metric) for lang in languages]

    def summary(rows, metric):
        deltas = [row["delta"] for row in rows]
        better = [row["lang"] for row in rows if row["significant"] and (row["delta"] > 0) == (metric == "accuracy")]
        worse = [row["lang"] for row in rows if row["significant"] and row["lang"] not in better]
        text = f"from {min(deltas):+.3f} to {max(deltas):+.3f}"
        parts = []
        if better:
            parts.append(f"significantly better in {len(better)} of {count} ({', '.join(better)})")
        if worse:
            parts.append(f"significantly worse in {len(worse)} of {count} ({', '.join(worse)})")
        return text + ("; " + "; ".join(parts) if parts else f"; significant in none of the {count} languages")

    base = tables["baseline"]
    if "accuracy" in metrics:
        accuracy = [lookup(tables, base, lang, "uncalibrated", "accuracy")["value"] for lang in languages]
        lines.append(f"- The baseline `single` on the last layer reaches accuracy {min(accuracy):.3f} to "
                     f"{max(accuracy):.3f} across the {count} languages.")
    shown = list(tables["best_lower"].items()) + [(key[0], key) for key in tables["configurations"]
                                                  if key[0] == "scalar_mix"]
    for head, key in shown:
        where = f"lower layer {key[1][0]}" if head in FUSION_HEADS else f"layers {key[1][0]}..{key[1][-1]}"
        sentence = f"- `{head}` ({where}) against the baseline:"
        if "accuracy" in metrics:
            sentence += f" accuracy changes {summary(changes(key, 'accuracy', 'uncalibrated'), 'accuracy')}."
        if "ece" in metrics:
            sentence += (f" ECE changes {summary(changes(key, 'ece', 'uncalibrated'), 'ece')} uncalibrated, and "
                         f"{summary(changes(key, 'ece', 'zero_shot_ts'), 'ece')} after zero-shot temperature scaling.")
        lines.append(sentence)
    if "ece" in metrics:
        for condition, label in (("uncalibrated", "uncalibrated"), ("zero_shot_ts", "after zero-shot temperature scaling")):
            compared = [row for row in tables["rows"] if row["metric"] == "ece" and row["condition"] == condition
                        and "delta" in row]
            lower = sum(row["significant"] and row["delta"] < 0 for row in compared)
            higher = sum(row["significant"] and row["delta"] > 0 for row in compared)
            lines.append(f"- Over the whole grid ({len(compared)} configuration-language comparisons), ECE {label} is "
                         f"significantly lower than the baseline's in {lower} and significantly higher in {higher}.")
        before = [lookup(tables, base, lang, "uncalibrated", "ece")["value"] for lang in languages]
        after = [lookup(tables, base, lang, "zero_shot_ts", "ece")["value"] for lang in languages]
        oracle = [lookup(tables, base, lang, "oracle_ts", "ece")["value"] for lang in languages]
        lowered = sum(a < b for a, b in zip(after, before))
        lines.append(f"- Zero-shot temperature scaling (temperature {tables['temperatures'][base]:.3f}, fitted on "
                     f"English dev) lowers the baseline's ECE in {lowered} of {count} languages (mean ECE "
                     f"{np.mean(before):.4f} before, {np.mean(after):.4f} after); a per-language oracle temperature "
                     f"gives a mean of {np.mean(oracle):.4f}.")
    return lines


def _lower_layer(key: tuple, last: int) -> Optional[int]:
    head, layers = key
    if head in FUSION_HEADS and len(layers) == 2 and layers[1] == last:
        return layers[0]
    if head == "single" and len(layers) == 1:
        return layers[0]
    return None


def rows_to_csv(rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _csv_value(row.get(column)) for column in CSV_COLUMNS})
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _row_key(head: str, layers: str, lang: str, condition: str, metric: str) -> tuple:
    return head, layers, lang, condition, metric


def lookup(tables: dict, key: tuple, lang: str, condition: str, metric: str) -> dict:
    """The row of one configuration, language, condition and metric."""
    return tables["index"][_row_key(key[0], "_".join(map(str, key[1])), lang, condition, metric)]


def write_report(tables: dict, out: Path, log: Callable[[str], None] = print) -> Path:
    """Write ``results.csv``, ``report.md``, ``figures/`` and ``report_config.json`` into ``out``, atomically."""
    from .figures import save_figures

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "results.csv").write_text(rows_to_csv(tables["rows"]))
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
    log(f"wrote {out / 'report.md'}, {out / 'results.csv'} and {len(figures)} figures")
    return out


def _cell(row: dict, digits: int = 3) -> str:
    mark = " †" if row.get("invalid_seeds") else ""
    return f"{row['value']:.{digits}f} [{row['low']:.{digits}f}, {row['high']:.{digits}f}]{mark}"


def _delta_cell(row: dict, digits: int = 3) -> str:
    mark = " *" if row["significant"] else ""
    return f"{row['delta']:+.{digits}f} [{row['delta_low']:+.{digits}f}, {row['delta_high']:+.{digits}f}]{mark}"


def _table(header: list, body: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(map(str, line)) + " |" for line in body] + [""]


def _label(key: tuple) -> str:
    from .figures import configuration_label

    return configuration_label(key)


def render_markdown(tables: dict, figures: list) -> str:
    """The Markdown report of :func:`build_report`'s tables; ``figures`` are (file name, caption) pairs."""
    from .figures import CONDITION_LABELS, METRIC_LABELS

    plan, config, status = tables["plan"], tables["config"], tables["status"]
    metrics, languages, baseline = config["metrics"], tables["languages"], tables["baseline"]
    extract, last = plan["extract"], plan["num_hidden_layers"]
    seeds = sorted({task["seed"] for task in plan["tasks"]})
    lines = [
        "# xfuse report", "",
        f"Made by xfuse {__version__} from a sweep of {len(plan['tasks'])} tasks: {len(status['done'])} done, "
        f"{len(status['failed'])} failed, {len(status['missing'])} missing.",
        f"Encoder `{extract['encoder']}` ({last} layers; hidden states 0..{last}, 0 the embedding output), "
        f"max length {extract['max_length']}, features stored as {extract['dtype']}; seeds {seeds}; "
        f"training settings {json.dumps(plan['train'], sort_keys=True) if plan['train'] else 'the defaults'}.",
        "",
        f"Baseline: `single` on layer {last} (the last). Each value is the mean over a configuration's seeds, "
        f"with a 95% percentile bootstrap interval ({config['n_resamples']} resamples of the test examples, the "
        "same for every seed and configuration of a language). Changes against the baseline are paired on those "
        "resamples; their two-sided p-values come from the bootstrap standard error of the change (a Wald test) and "
        "are adjusted by Holm's method within each metric and condition, over every "
        f"configuration and language; `*` marks a change significant at {config['alpha']} after adjustment. "
        "Zero-shot temperature scaling fits one temperature on English dev; oracle temperature scaling fits one "
        "per language on its own dev set (an upper bound, not a zero-shot result); temperature plus bias fits "
        "`a (z1 - z0) + b` the same two ways, where the results hold it. Binned ECEs are biased upward "
        "on resamples, so an ECE's interval can lie above its value when the calibration error is small. "
        "`†` marks a value to which a seed contributes an anti-informative fit (its logits rank the classes the "
        "wrong way round on the dev set the calibrator was fitted on): a clamp, not a calibration.",
        "",
    ]
    best = tables["best_lower"]
    shown = [baseline] + list(best.values()) + [key for key in tables["configurations"] if key[0] == "scalar_mix"]
    lines += ["## Findings", "", "Generated from the tables below; \"significantly\" means after Holm's correction.",
              ""] + findings(tables) + [""]
    lines += ["## Baseline and fusion heads at their best lower layer", ""]
    if best:
        lines += ["The best lower layer of each fusion head is chosen on English dev (lowest dev-en loss at the "
                  "selected epoch, mean over seeds), never on test:", ""]
        lines += _table(["head", "best lower layer", "dev-en loss", "zero-shot temperature"],
                        [[head, key[1][0], f"{tables['dev_en_loss'][key]:.4f}", f"{tables['temperatures'][key]:.3f}"]
                         for head, key in best.items()])
    for condition in tables["conditions"]:
        lines += [f"### {CONDITION_LABELS[condition].capitalize()}", ""]
        body = [[_label(key), lang] + [_cell(lookup(tables, key, lang, condition, metric)) for metric in metrics]
                for key in shown for lang in languages]
        lines += _table(["configuration", "lang"] + [METRIC_LABELS[m] for m in metrics], body)
    if tables["few_shot"]:
        ks = sorted({k for table in tables["few_shot"].values() for per_k in table.values() for k in per_k})
        lines += ["## Few-shot temperature scaling", "",
                  f"ECE after a temperature fitted on k labelled examples of the language's own dev set "
                  f"({config['few_shot_draws']} stratified draws per k; mean over draws, then over seeds, "
                  "with the draws' standard deviation), between the zero-shot temperature (English dev) and the "
                  "oracle (all of the language's dev set). Temperature plus bias fits `a (z1 - z0) + b` instead "
                  "of a temperature alone, zero-shot and oracle, in the tables above.", ""]
        body = []
        for key, table in tables["few_shot"].items():
            for lang in languages:
                body.append([_label(key), lang, f"{lookup(tables, key, lang, 'zero_shot_ts', 'ece')['value']:.3f}"]
                            + [f"{table[lang][k]['mean']:.3f} ± {table[lang][k]['std']:.3f}" if k in table[lang] else "-"
                               for k in ks]
                            + [f"{lookup(tables, key, lang, 'oracle_ts', 'ece')['value']:.3f}"])
        lines += _table(["configuration", "lang", "zero-shot TS"] + [f"k = {k}" for k in ks] + ["oracle TS"], body)
    lines += ["## Changes against the baseline", ""]
    for condition in tables["conditions"]:
        lines += [f"### {CONDITION_LABELS[condition].capitalize()}", ""]
        body = [[_label(key), lang] + [_delta_cell(lookup(tables, key, lang, condition, metric)) for metric in metrics]
                for key in shown[1:] for lang in languages]
        lines += _table(["configuration", "lang"] + [f"change in {METRIC_LABELS[m]}" for m in metrics], body) \
            if body else ["No configuration besides the baseline has finished.", ""]
    lines += ["### Significant changes across the whole grid", "",
              "Counts over every configuration and language; for accuracy an improvement is a rise, for every "
              "other metric a fall.", ""]
    body = []
    for metric in metrics:
        for condition in tables["conditions"]:
            compared = [row for row in tables["rows"] if row["metric"] == metric and row["condition"] == condition
                        and "delta" in row]
            better = sum(row["significant"] and (row["delta"] > 0) == (metric == "accuracy") for row in compared)
            worse = sum(row["significant"] for row in compared) - better
            body.append([METRIC_LABELS[metric], CONDITION_LABELS[condition], len(compared), better, worse])
    lines += _table(["metric", "condition", "comparisons", "significantly better", "significantly worse"], body)
    lines += ["## Across layers", "",
              "Mean over seeds, uncalibrated; `*`: significantly different from the baseline after Holm.", ""]
    for head in ["single"] + list(FUSION_HEADS):
        keys = [key for key in tables["configurations"] if key[0] == head and _lower_layer(key, last) is not None]
        if len(keys) < 2:
            continue
        for metric in [m for m in ("ece", "accuracy") if m in metrics]:
            title = "layer" if head == "single" else "lower layer"
            body = []
            for key in sorted(keys, key=lambda k: _lower_layer(k, last)):
                cells = []
                for lang in languages:
                    row = lookup(tables, key, lang, "uncalibrated", metric)
                    cells.append(f"{row['value']:.3f}{' *' if row.get('significant') else ''}")
                body.append([_lower_layer(key, last)] + cells)
            lines += [f"### {head}: {METRIC_LABELS[metric]}", ""] + _table([title] + languages, body)
    lines += ["## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}](figures/{name})", "", f"*{caption}.*", ""]
    lines += render_provenance(tables["provenance"])
    return "\n".join(lines).rstrip() + "\n"


PROVENANCE_HEADING = "## Provenance"


def render_provenance(facts: dict) -> list:
    """The last section of the report: versions, store, data counts, measured times (these differ between runs)."""
    store = facts["store"]
    lines = [PROVENANCE_HEADING, "",
             "Versions: " + ", ".join(f"{name} {version}" for name, version in facts["versions"].items()) + ".",
             f"Features store: encoder `{store['encoder']}` revision `{store['encoder_revision']}`, prefix "
             f"{store['prefix']!r}, max length {store['max_length']}, {store['dtype']}, fingerprint "
             f"`{store['fingerprint'][:16]}`.", "", "Data, per PAWS-X file (rows kept and dropped):", ""]
    lines += _table(["file", "pairs kept", "NS dropped", "empty dropped", "-1 dropped"],
                    [[f"{f['lang']}/{f['file']}", f["num_pairs"], f["dropped_not_translated"], f["dropped_empty"],
                      f["dropped_unlabelled"]] for f in facts["files"]])
    leakage = facts.get("leakage")
    if leakage:
        action = "dropped from training" if leakage["policy"] == "drop" else "kept in training"
        lines += [f"Leakage check of the training file against every evaluated file, by content: "
                  f"{leakage['exact_overlaps']} exact sentence overlaps; {leakage['same_family_pairs']} training pairs "
                  f"of an evaluated sentence's source family ({leakage['measure']} >= {leakage['threshold']}), "
                  f"{action}. Per evaluated file:", ""]
        lines += _table(["evaluated file", "same-family training pairs"],
                        [[f"{entry['lang']}/{entry['split']}", entry["pairs"]] for entry in leakage["per_file"].values()])
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
