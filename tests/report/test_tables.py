"""xfuse report on a tiny sweep: values against independent recomputation, paired tests, sections, figure content."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from scipy.special import softmax

from xfuse.calibration import metrics as cal
from xfuse.errors import XfuseError
from xfuse.heads.result_files import write_manifest
from xfuse.report.figures import (accuracy_vs_ece_figure, delta_heatmap_figure, delta_matrix, figure_specs,
                           reliability_figure, signed_error_figure)
from xfuse.report.render import ROW_COLUMNS, to_csv, write_report
from xfuse.report.statistics import equivalence_test, holm
from xfuse.report.tables import POOLED, REPORT_METRICS, ReportConfig, build_report, lookup
from xfuse.sweep.plan import SweepSpec, make_plan, run_local, run_task

SPEC = {"grids": [{"heads": ["single"], "layers": "each"},
                  {"heads": ["dlfa", "aif", "concat", "mean"], "layers": "lower_with_last"},
                  {"heads": ["scalar_mix"], "layers": "all"}],
        "seeds": [0, 1], "train": {"max_epochs": 2, "n_resamples": 0, "attention_dim": 8, "batch_size": 16}}
CONFIGURATIONS = 3 + 4 * 2 + 1  # on the 2-layer tiny encoder
REPORT_SETTINGS = dict(n_resamples=200, few_shot_ks=(4, 12, 50), few_shot_draws=5)  # 50 > the 24 dev pairs: left out


def plan_sweep(folder, tiny_encoder, mini_pawsx, **changes):
    spec = dict(SPEC, **changes, extract={"encoder": str(tiny_encoder), "data_dir": str(mini_pawsx), "max_length": 64,
                               "languages": ["en", "de", "ja"], "device": "cpu", "shard_size": 16})
    make_plan(SweepSpec.from_dict(spec), folder)
    return folder / "plan.json"


@pytest.fixture(scope="module")
def sweep(tiny_encoder, mini_pawsx, tmp_path_factory):
    plan_path = plan_sweep(tmp_path_factory.mktemp("a") / "sweep", tiny_encoder, mini_pawsx)
    assert not run_local(plan_path, workers=2, progress=False, log=lambda line: None)["failed"]
    tables = build_report(ReportConfig(plan=str(plan_path), **REPORT_SETTINGS), log=lambda line: None)
    out = write_report(tables, plan_path.parent / "report", log=lambda line: None)
    return plan_path, tables, out


def read_rows(out):
    return list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))


def pick(rows, head, layers, lang, condition, metric, seed="mean"):
    (row,) = [r for r in rows if (r["head"], r["layers"], r["lang"], r["condition"], r["metric"], r["seed"]) ==
              (head, layers, lang, condition, metric, seed)]
    return row


def read_comparisons(out):
    return list(csv.DictReader(io.StringIO((out / "comparisons.csv").read_text())))


def member_probabilities(results, head, layers, seed, part, condition, lang):
    """A run's class probabilities of one part under a condition, recomputed from its saved files."""
    folder = results / f"{head}-L{layers}-s{seed}"
    metrics = json.loads((folder / "metrics.json").read_text())
    with np.load(folder / "predictions.npz") as arrays:
        logits, labels = arrays[f"{part}/logits"].astype(np.float64), arrays[f"{part}/labels"]
    if condition.endswith("_bias"):  # P(y = 1) = sigmoid(a (z1 - z0) + b), the fitted (a, b)
        fit = (metrics["fits"] if condition.startswith("zero") else metrics["languages"][lang]["fits"])[condition]
        positive = 1 / (1 + np.exp(-(fit["slope"] * (logits[:, 1] - logits[:, 0]) + fit["bias"])))
        return np.stack([1 - positive, positive], axis=1), labels
    temperature = {"uncalibrated": 1.0, "zero_shot_ts": metrics["zero_shot_temperature"],
                   "oracle_ts": metrics["languages"][lang]["oracle_temperature"]}[condition]
    return softmax(logits / temperature, axis=1), labels


def test_csv_holds_every_configuration_language_condition_and_metric_with_seed_rows(sweep):
    _, tables, out = sweep
    rows = read_rows(out)
    configurations = len(tables["configurations"])
    late = [key for key in tables["configurations"] if key[0] == "late"]
    assert {key[1] for key in late} >= {(0, 2), (1, 2)} and len(late) in (2, 3)
    assert configurations == CONFIGURATIONS + len(late) + 1  # trained, late fusion, the constant
    means = [r for r in rows if r["seed"] == "mean"]
    assert len(means) == configurations * 4 * 5 * len(REPORT_METRICS)  # 3 languages and their mean outside en; 5 conditions
    per_seed = [r for r in rows if r["seed"] != "mean"]
    assert len(per_seed) == (configurations - 1) * 2 * 4 * 5 * len(REPORT_METRICS) + 4 * 5 * len(REPORT_METRICS)
    # item 3 of the issue: every interval contains its point estimate
    assert all(float(r["low"]) <= float(r["value"]) <= float(r["high"]) for r in means if r["low"] != "")
    assert {r["noise_floor"] != "" for r in means if r["metric"] in ("ece", "adaptive_ece")} == {True}
    comparisons = read_comparisons(out)
    assert {r["reference"] for r in comparisons} == {"last_layer", "best_single", "uncalibrated", "temperature",
                                                    "early_fusion"}
    tested = [r for r in comparisons if r["p_holm"] != ""]
    assert tested and all(float(r["p_holm"]) >= float(r["p_value"]) - 1e-12 for r in tested)
    assert not any(r["head"] == "constant" for r in comparisons)
    # calibration of a side at the prior is not tested; the rest is
    from xfuse.report.tables import CALIBRATION_METRICS
    for r in comparisons:
        untestable = r["example_only"] == "True" or (r["metric"] in CALIBRATION_METRICS and r["learned"] == "False")
        assert (r["p_holm"] == "") == untestable, r
        assert r["significant"] == "False" or not untestable
    # late fusion against its own last layer: the same runs, per-seed differences
    late_rows = [r for r in comparisons if r["head"] == "late" and r["layers"] == "0_2" and r["reference"] == "last_layer"]
    assert late_rows and {r["same_seeds"] for r in late_rows} == {"True"}
    # what zero-shot temperature scaling does, the same runs before and after
    assert any(r["reference"] == "uncalibrated" and r["condition"] == "zero_shot_ts" and r["metric"] == "ece"
               for r in comparisons)
    # late fusion at its best lower layer against the early fusion chosen on dev-en: other runs, other seeds' data
    late, early = tables["late_against_early"]
    assert late == tables["best_lower"]["late"] and early == min(
        [key for head, key in tables["best_lower"].items() if head != "late"], key=lambda k: tables["dev_en_loss"][k])
    early_rows = [r for r in comparisons if r["reference"] == "early_fusion"]
    assert {(r["head"], r["layers"], r["reference_layers"], r["same_seeds"]) for r in early_rows} == \
        {("late", "_".join(map(str, late[1])), "_".join(map(str, early[1])), "False")}
    for r in early_rows:
        assert float(r["delta"]) == pytest.approx(
            float(pick(read_rows(out), "late", r["layers"], r["lang"], r["condition"], r["metric"])["value"])
            - float(pick(read_rows(out), early[0], r["reference_layers"], r["lang"], r["condition"], r["metric"])["value"]),
            abs=1e-5)  # the CSV's six significant digits
    # equally accurate within the margin: two one-sided tests on the accuracy rows, Holm over the languages
    tested = [r for r in tables["comparisons"] if r["reference"] == "early_fusion" and r["p_holm"] is not None
              and r["metric"] == "accuracy" and r["condition"] == "uncalibrated" and r["lang"] != POOLED]
    assert tested and all(r["equivalence_p"] == equivalence_test(r["delta"], r["se"], r["dof"], 0.01) for r in tested)
    assert [r["equivalence_p_holm"] for r in tested] == pytest.approx(list(holm([r["equivalence_p"] for r in tested])))
    assert all(r["equivalence_p"] is None for r in tables["comparisons"] if r["metric"] != "accuracy")
    # what the bias adds to the temperature fitted on the same set: the pre-specified configurations only
    bias_rows = [r for r in comparisons if r["reference"] == "temperature"]
    assert {r["condition"] for r in bias_rows} == {"zero_shot_bias", "oracle_bias"}
    assert {r["same_seeds"] for r in bias_rows} == {"True"}
    assert {(r["head"], r["layers"]) for r in bias_rows} == {(key[0], "_".join(map(str, key[1])))
                                                             for key in tables["primary"]}


def joint_counts(results, languages, n_resamples, seed=0) -> dict:
    """Per language, the columns of one bootstrap draw over every language's test pair ids (by id)."""
    ids = {}
    for lang in languages:
        with np.load(results / "single-L2-s0" / "predictions.npz") as arrays:
            ids[lang] = arrays[f"test-{lang}/ids"].tolist()
    union = list(dict.fromkeys(pair for lang in languages for pair in ids[lang]))
    counts = cal.resample_counts(len(union), n_resamples, seed)
    return {lang: counts[:, [union.index(pair) for pair in ids[lang]]] for lang in languages}


def test_values_and_intervals_equal_an_independent_recomputation(sweep):
    from xfuse.report.statistics import paired_seed_test, seed_interval

    plan_path, tables, out = sweep
    rows = read_rows(out)
    results = plan_path.parent / "results"
    for head, layers, lang, condition in (("aif", "1_2", "de", "zero_shot_ts"), ("single", "2", "ja", "oracle_ts"),
                                          ("scalar_mix", "0_1_2", "en", "uncalibrated"),
                                          ("dlfa", "0_2", "de", "oracle_bias"), ("mean", "1_2", "ja", "zero_shot_bias")):
        counts = joint_counts(results, tables["languages"], 200)[lang]
        for metric in ("accuracy", "ece", "nll", "auroc"):
            values, resampled = [], []
            for seed in (0, 1):
                probs, labels = member_probabilities(results, head, layers, seed, f"test-{lang}", condition, lang)
                values.append(cal.metric_value(metric, probs, labels, 15))
                resampled.append(cal.resampled_metrics(probs, labels, counts, 15, (metric,))[metric])
                assert float(pick(rows, head, layers, lang, condition, metric, str(seed))["value"]) == \
                    pytest.approx(values[-1], abs=1e-5)
            expected = seed_interval(values, np.stack(resampled, axis=1), positive=metric in ("ece", "nll"))
            row = pick(rows, head, layers, lang, condition, metric)
            for field in ("value", "low", "high"):
                assert float(row[field]) == pytest.approx(expected[field], rel=1e-5, abs=1e-6), (head, metric, field)
    single = ("single", "2")  # the last layer: a pre-specified configuration, with its bias against its temperature
    for condition, temperature_only in (("zero_shot_bias", "zero_shot_ts"), ("oracle_bias", "oracle_ts")):
        (row,) = [r for r in read_comparisons(out) if (r["head"], r["layers"], r["lang"], r["condition"], r["metric"],
                                                      r["reference"]) == (*single, "ja", condition, "ece", "temperature")]
        differences = [cal.ece(*member_probabilities(results, *single, seed, "test-ja", condition, "ja"))
                       - cal.ece(*member_probabilities(results, *single, seed, "test-ja", temperature_only, "ja"))
                       for seed in (0, 1)]
        assert float(row["delta"]) == pytest.approx(np.mean(differences), abs=1e-6)
    for (key, lang), rate in tables["positive_rate"].items():  # uncalibrated, the tie rule, mean over seeds
        if key == ("single", (2,)):
            expected = np.mean([np.mean(member_probabilities(results, "single", "2", seed, f"test-{lang}",
                                                             "uncalibrated", lang)[0][:, 1] > 0.5) for seed in (0, 1)])
            assert rate == pytest.approx(expected)
    row = [r for r in read_comparisons(out) if (r["head"], r["layers"], r["lang"], r["condition"], r["metric"],
                                                r["reference"]) == ("dlfa", "0_2", "de", "uncalibrated", "ece", "last_layer")]
    assert float(row[0]["delta"]) == pytest.approx(float(pick(rows, "dlfa", "0_2", "de", "uncalibrated", "ece")["value"])
                                                   - float(pick(rows, "single", "2", "de", "uncalibrated", "ece")["value"]),
                                                   abs=1e-5)
    floors = [float(pick(rows, *side, "de", "uncalibrated", "ece")["noise_floor"]) for side in (("dlfa", "0_2"),
                                                                                                ("single", "2"))]
    assert float(row[0]["debiased_delta"]) == pytest.approx(float(row[0]["delta"]) - (floors[0] - floors[1]), abs=1e-5)
    assert float(row[0]["noise_floor"]) == pytest.approx(max(floors), abs=1e-6)


def test_late_fusion_is_the_mean_of_the_single_heads_probabilities(sweep):
    plan_path, tables, out = sweep
    rows, results = read_rows(out), plan_path.parent / "results"
    for seed in (0, 1):
        fused = np.mean([member_probabilities(results, "single", layer, seed, "test-ja", "uncalibrated", "ja")[0]
                         for layer in ("0", "2")], axis=0)
        labels = member_probabilities(results, "single", "0", seed, "test-ja", "uncalibrated", "ja")[1]
        for metric in ("ece", "brier", "accuracy"):
            assert float(pick(rows, "late", "0_2", "ja", "uncalibrated", metric, str(seed))["value"]) == \
                pytest.approx(cal.metric_value(metric, fused, labels, 15), abs=1e-5)


def test_reference_rows_the_constant_and_the_best_single_layer_chosen_on_english_dev(sweep):
    from xfuse.features.data import read_pairs

    plan_path, tables, out = sweep
    rows = read_rows(out)
    plan = json.loads(plan_path.read_text())
    rate = read_pairs(Path(plan["extract"]["data_dir"]) / "en" / "train.tsv", "train", "en").labels.mean()
    assert tables["base_rate"] == pytest.approx(rate)
    labels = member_probabilities(plan_path.parent / "results", "single", "2", 0, "test-de", "uncalibrated", "de")[1]
    majority = float(rate > 0.5)
    accuracy = float(np.mean(labels == majority))
    assert float(pick(rows, "constant", "", "de", "uncalibrated", "accuracy")["value"]) == pytest.approx(accuracy, abs=1e-6)
    assert float(pick(rows, "constant", "", "de", "uncalibrated", "ece")["value"]) == \
        pytest.approx(abs(max(rate, 1 - rate) - accuracy), abs=1e-6)
    losses = {}
    for layer in (0, 1, 2):
        for seed in (0, 1):
            folder = plan_path.parent / "results" / f"single-L{layer}-s{seed}"
            best = json.loads((folder / "metrics.json").read_text())["best_epoch"]
            losses.setdefault(layer, []).append(json.loads((folder / "curve.json").read_text())[best - 1]["dev_en_loss"])
    chosen = min(losses, key=lambda layer: np.mean(losses[layer]))
    assert tables["best_single"] == ("single", (chosen,))


def test_learned_is_read_from_the_runs_and_not_learned_configurations_are_listed(sweep):
    plan_path, tables, out = sweep
    results = plan_path.parent / "results"
    expected = {}
    for task in json.loads(plan_path.read_text())["tasks"]:
        facts = json.loads((results / task["name"] / "metrics.json").read_text())["learned"]
        if not facts["learned"]:
            expected.setdefault((task["head"], tuple(task["layers"])), []).append(task["seed"])
    trained = {key: seeds for key, seeds in tables["not_learned"].items() if key[0] != "late"}
    assert trained == expected
    text = (out / "report.md").read_text()
    assert "## Configurations that did not learn" in text
    for key in tables["not_learned"]:
        assert f"| {key[0]} [{', '.join(map(str, key[1]))}] | " in text


def test_a_stale_or_foreign_result_is_refused_with_its_folder_named(sweep, tmp_path):
    plan_path, _, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(plan_path.parent, copy, ignore=shutil.ignore_patterns("report", "features"))
    config_path = copy / "results" / "aif-L0_2-s1" / "config.json"
    config = json.loads(config_path.read_text())
    config["train"]["learning_rate"] = 0.1  # made by another recipe
    config_path.write_text(json.dumps(config))
    write_manifest(config_path.parent)  # whole as written: a result of another recipe, not a damaged one
    planned = json.loads((copy / "plan.json").read_text())["train_resolved"]["learning_rate"]
    with pytest.raises(XfuseError, match=rf"aif-L0_2-s1: a stale or foreign result: learning_rate is 0.1 there, the "
                                         rf"plan asks for {planned}"):
        build_report(ReportConfig(plan=str(copy / "plan.json"), n_resamples=100), log=lambda line: None)
    metrics_path = copy / "results" / "aif-L0_2-s1" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    config["train"]["learning_rate"] = planned
    config_path.write_text(json.dumps(config))
    write_manifest(config_path.parent)
    del metrics["languages"]["ja"]  # made for fewer languages than the plan's
    original = metrics_path.read_text()
    metrics_path.write_text(json.dumps(metrics))
    write_manifest(config_path.parent)
    with pytest.raises(XfuseError, match=r"aif-L0_2-s1: no results for language\(s\) ja of the plan"):
        build_report(ReportConfig(plan=str(copy / "plan.json"), n_resamples=100), log=lambda line: None)
    metrics_path.write_text(original)
    write_manifest(config_path.parent)
    config["train"]["seed"] = 0  # another task's result under this name
    config_path.write_text(json.dumps(config))
    write_manifest(config_path.parent)
    with pytest.raises(XfuseError, match=r"aif-L0_2-s1: a stale or foreign result: seed is 0 there"):
        build_report(ReportConfig(plan=str(copy / "plan.json"), n_resamples=100), log=lambda line: None)


def test_markdown_has_every_section_and_the_csv_numbers(sweep):
    _, tables, out = sweep
    text = (out / "report.md").read_text()
    for heading in ("# xfuse report", "## Findings", "## Configurations that did not learn",
                    "## Reference rows and each strategy at its best lower layer", "### Uncalibrated",
                    "### Zero-shot temperature scaling", "### Oracle temperature scaling",
                    "### Zero-shot temperature plus bias", "### Oracle temperature plus bias",
                    "## Brier score's calibration and refinement parts", "## Few-shot temperature scaling",
                    "## Changes against the best single layer (chosen on English dev)",
                    "## Changes against the last layer", "### Significant changes across the whole grid",
                    "## Across layers", "### dlfa: ECE", "### single: accuracy", "### late: ECE", "## Figures",
                    "## Provenance"):
        assert f"\n{heading}\n" in f"\n{text}", heading
    for name, *_ in figure_specs(tables):
        assert f"](figures/{name})" in text
    base = pick(read_rows(out), "single", "2", "de", "uncalibrated", "accuracy")
    assert f" | de | {float(base['value']):.3f} [{float(base['low']):.3f}, {float(base['high']):.3f}] |" in text
    ece = pick(read_rows(out), "single", "2", "de", "uncalibrated", "ece")
    assert f"{float(ece['value']):.3f} [{float(ece['low']):.3f}, {float(ece['high']):.3f}] (floor " \
           f"{float(ece['noise_floor']):.3f})" in text
    assert f"{CONFIGURATIONS * 2} tasks: {CONFIGURATIONS * 2} done, 0 failed, 0 missing" in text
    assert json.loads((out / "report_config.json").read_text())["report"]["n_resamples"] == 200
    accuracy = [float(pick(read_rows(out), "single", "2", lang, "uncalibrated", "accuracy")["value"])
                for lang in tables["languages"]]
    assert f"The last layer (single [2]) reaches accuracy {min(accuracy):.3f} to {max(accuracy):.3f} across the 3 " \
           "languages" in text
    for head, key in tables["best_lower"].items():
        if key != tables["best_single"]:  # a configuration not learned on every seed says so after its name
            learned_note = "" if key not in tables["not_learned"] else r" \(‡ learned on \d of 2 seeds[^)]*\)"
            assert re.search(rf"- {head} \[{key[1][0]}, {key[1][1]}\]{learned_note} against the best single layer: "
                             "averaged outside English, accuracy changes by ", text), (head, key)
    from xfuse.report.tables import POOLED  # the mean outside English: in the tables, from the CSV's numbers
    pooled = pick(read_rows(out), "single", "2", POOLED, "uncalibrated", "accuracy")
    assert f" | {POOLED} | {float(pooled['value']):.3f} [{float(pooled['low']):.3f}, {float(pooled['high']):.3f}] |" \
        in text
    # provenance: data counts per file from the store, versions
    assert "| ja/test_2k.tsv | 23 | 1 | 0 | 0 |" in text and "torch 2.13.0" in text
    assert "Leakage check of the training file against every evaluated file, by content: 0 exact sentence" in text


def test_figures_are_written_and_show_the_tables(sweep):
    _, tables, out = sweep
    names = sorted(path.name for path in (out / "figures").glob("*.png"))
    assert names == sorted(name for name, *_ in figure_specs(tables)) and len(names) == 8
    for name in names:
        pixels = mpimg.imread(out / "figures" / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels[..., :3].std() > 0.05, name

    figure = delta_heatmap_figure(tables, "ece", "uncalibrated")
    panels = [axis for axis in figure.axes if axis.images]
    assert [axis.get_title() for axis in panels] == tables["languages"]
    for axis, lang in zip(panels, tables["languages"]):
        heads, lowers, deltas, _ = delta_matrix(tables, "ece", "uncalibrated", lang)
        assert heads == ["aif", "concat", "dlfa", "late", "mean"] and lowers == [0, 1]
        np.testing.assert_allclose(axis.images[0].get_array(), deltas)
        assert [tick.get_text() for tick in axis.get_yticklabels()] == heads
    assert "against the best single layer" in figure.axes[-1].get_ylabel()  # the colour bar

    figure = reliability_figure(tables)
    diagrams = [axis for axis in figure.axes if axis.get_visible() and axis.get_ylabel() == "accuracy"]
    assert [axis.get_title() for axis in diagrams] == tables["languages"]
    for axis in diagrams:
        labels = [line.get_label() for line in axis.get_lines()]
        assert labels[0] == "perfect calibration" and labels[1] == "single [2]"
    counts = [axis for axis in figure.axes if axis.get_visible() and axis.get_ylabel() == "examples"]
    assert len(counts) == len(tables["languages"])
    heights = sum(patch.get_height() for patch in counts[0].patches)  # every example of every seed, each bar
    shown = len(diagrams[0].get_lines()) - 1
    assert heights == len(tables["reliability"][(tables["baseline"], tables["languages"][0])][0]) * shown

    figure = accuracy_vs_ece_figure(tables)
    (axis,) = figure.axes
    assert len(axis.collections) == (len(tables["configurations"]) - 1) * len(tables["languages"])
    assert axis.get_xlabel() == "ECE (uncalibrated)"

    figure = signed_error_figure(tables)
    (axis,) = figure.axes
    (line, *_), *_ = axis.containers
    np.testing.assert_allclose(line.get_ydata(), [lookup(tables, tables["baseline"], lang, "uncalibrated",
                                                         "signed_calibration_error")["value"]
                                                  for lang in tables["languages"]])


def test_an_interrupted_sweep_reports_exactly_as_an_uninterrupted_one(sweep, tmp_path):
    plan_path, _, out = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(plan_path.parent, copy, ignore=shutil.ignore_patterns("report", "features"))
    for task in json.loads(plan_path.read_text())["tasks"][::3]:  # lose a third of the results, then resume
        shutil.rmtree(copy / "results" / task["name"])
    # Same workers, so the same torch threads per task, as the uninterrupted sweep: float sums depend on them.
    outcome = run_local(copy / "plan.json", workers=2, progress=False, log=lambda line: None)
    assert len(outcome["done"]) == CONFIGURATIONS * 2 // 3 and len(outcome["skipped"]) == CONFIGURATIONS * 2 * 2 // 3
    tables = build_report(ReportConfig(plan=str(copy / "plan.json"), **REPORT_SETTINGS), log=lambda line: None)
    resumed = write_report(tables, copy / "report", log=lambda line: None)
    assert (resumed / "results.csv").read_text() == (out / "results.csv").read_text()
    assert (resumed / "comparisons.csv").read_text() == (out / "comparisons.csv").read_text()
    before_provenance = lambda path: path.read_text().split("\n## Provenance\n")[0]  # measured times differ
    assert before_provenance(resumed / "report.md") == before_provenance(out / "report.md")


def test_report_needs_the_baseline_and_finished_tasks(tiny_encoder, mini_pawsx, tmp_path):
    grids = [{"heads": ["single"], "layers": [[-1], [0]]}]
    plan_path = plan_sweep(tmp_path / "sweep", tiny_encoder, mini_pawsx, grids=grids, seeds=[0])
    with pytest.raises(XfuseError, match=r"no finished task yet; run xfuse sweep submit first"):
        build_report(ReportConfig(plan=str(plan_path)), log=lambda line: None)
    run_local(plan_path, progress=False, log=lambda line: None)
    shutil.rmtree(plan_path.parent / "results" / "single-L2-s0")
    with pytest.raises(XfuseError, match=r"the last layer's baseline \(single on layer 2\) has no finished run"):
        build_report(ReportConfig(plan=str(plan_path)), log=lambda line: None)
    with pytest.raises(XfuseError, match=r"--bootstrap: expected at least 100 resamples, got 10"):
        build_report(ReportConfig(plan=str(plan_path), n_resamples=10), log=lambda line: None)


def test_csv_formatting_is_stable():
    text = to_csv([{"head": "aif", "layers": "4_12", "lower_layer": 4, "seed": "mean", "value": 0.123456789}], ROW_COLUMNS)
    assert text.splitlines()[1] == "aif,4_12,,4,mean,,,,,,,0.123457,,,,,,,"


def test_the_study_reproduce_script_runs_plan_sweep_and_report(tiny_encoder, mini_pawsx, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    spec = dict(SPEC, grids=[{"heads": ["single"], "layers": "each"}, {"heads": ["aif"], "layers": "lower_with_last"}],
                seeds=[0], extract={"encoder": str(tiny_encoder), "data_dir": str(mini_pawsx), "max_length": 64,
                                    "languages": ["en", "de"], "device": "cpu"})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run(["bash", str(REPO / "docs/results/pawsx-e5/reproduce.sh"), str(tmp_path / "study"),
                           str(tmp_path / "spec.json")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "study" / "report" / "report.md").read_text()
    assert "## Findings" in text and "## Figures" in text
    assert "| extract | 1 |" in text and "| tasks | 1 |" in text  # the stage times of timings.json
    timings = json.loads((tmp_path / "study" / "timings.json").read_text())
    assert timings["tasks"][0]["tasks"] == 5 and timings["extract"][0]["seconds"] >= 0


def test_languages_in_parallel_processes_give_the_same_rows(sweep):
    plan_path, tables, _ = sweep
    parallel = build_report(ReportConfig(plan=str(plan_path), **REPORT_SETTINGS, workers=2), log=lambda line: None)
    assert parallel["rows"] == tables["rows"] and parallel["comparisons"] == tables["comparisons"]


def test_few_shot_section_equals_a_direct_computation_from_the_predictions(sweep):
    from xfuse.calibration.fewshot import few_shot_ts

    plan_path, tables, out = sweep
    means = []
    for seed in (0, 1):
        with np.load(plan_path.parent / "results" / f"single-L2-s{seed}" / "predictions.npz") as arrays:
            result = few_shot_ts(arrays["dev-de/logits"], arrays["dev-de/labels"], arrays["test-de/logits"],
                                 arrays["test-de/labels"], ks=(4, 12), draws=5, seed=0, metrics=("ece",))
        means.append(result[12]["ece"]["mean"])
    assert tables["few_shot"][tables["baseline"]]["de"][12]["mean"] == pytest.approx(np.mean(means), rel=1e-12)
    assert "| single [2] (last layer)" in (out / "report.md").read_text()
    assert f"{np.mean(means):.3f} ± " in (out / "report.md").read_text()


def test_reports_on_results_without_the_bias_conditions_leave_them_out(sweep, tmp_path):
    plan_path, tables, _ = sweep
    assert tables["conditions"] == ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias", "oracle_bias")
    copy = tmp_path / "sweep"
    shutil.copytree(plan_path.parent, copy, ignore=shutil.ignore_patterns("report", "features"))
    path = copy / "results" / "mean-L0_2-s0" / "metrics.json"  # one result made before the bias conditions
    metrics = json.loads(path.read_text())
    for result in metrics["languages"].values():
        del result["zero_shot_bias"], result["oracle_bias"]
    path.write_text(json.dumps(metrics))
    (path.parent / "manifest.json").unlink()  # and before manifests: checked whole
    older = build_report(ReportConfig(plan=str(copy / "plan.json"), n_resamples=100, few_shot_draws=0),
                         log=lambda line: None)
    assert older["conditions"] == ("uncalibrated", "zero_shot_ts", "oracle_ts")


def test_the_mean_outside_english_is_resampled_jointly_and_tested_in_its_own_families(sweep):
    from xfuse.report.tables import POOLED
    from xfuse.report.statistics import paired_seed_test, seed_interval

    plan_path, tables, out = sweep
    rows, results = read_rows(out), plan_path.parent / "results"
    outside = [lang for lang in tables["languages"] if lang != "en"]
    counts = joint_counts(results, tables["languages"], 200)
    arrays = {}
    for head, layers, condition in (("aif", "1_2", "zero_shot_ts"), ("single", "2", "zero_shot_ts")):
        for metric in ("accuracy", "ece"):
            values, resampled = [], []
            for seed in (0, 1):
                per_lang = [member_probabilities(results, head, layers, seed, f"test-{lang}", condition, lang)
                            for lang in outside]
                values.append(np.mean([cal.metric_value(metric, *pair, 15) for pair in per_lang]))
                resampled.append(np.mean([cal.resampled_metrics(*pair, counts[lang], 15, (metric,))[metric]
                                          for pair, lang in zip(per_lang, outside)], axis=0))
            values, resampled = np.array(values), np.stack(resampled, axis=1)
            arrays[(head, layers, metric)] = values, resampled
            expected = seed_interval(values, resampled, positive=metric == "ece")
            row = pick(rows, head, layers, POOLED, condition, metric)
            for field in ("value", "low", "high"):
                assert float(row[field]) == pytest.approx(expected[field], rel=1e-5, abs=1e-6), (head, metric, field)
            floors = [float(pick(rows, head, layers, lang, condition, "ece")["noise_floor"]) for lang in outside]
            if metric == "ece":
                assert float(row["noise_floor"]) == pytest.approx(np.mean(floors), rel=1e-5)
    test = paired_seed_test(*arrays[("aif", "1_2", "ece")], *arrays[("single", "2", "ece")])
    (row,) = [r for r in read_comparisons(out) if (r["head"], r["layers"], r["lang"], r["condition"], r["metric"],
                                                   r["reference"]) == ("aif", "1_2", POOLED, "zero_shot_ts", "ece",
                                                                       "last_layer")]
    for field in ("delta", "low", "high", "p_value"):
        assert float(row[field]) == pytest.approx(test[field], rel=1e-4, abs=1e-6), field
    # Holm within the pooled comparisons only: the number of tested ones in the family bounds the adjustment
    pooled = [r for r in tables["comparisons"] if r["lang"] == POOLED and r["reference"] == "last_layer"
              and r["metric"] == "accuracy" and r["condition"] == "uncalibrated" and r["family"] == "grid"
              and r["p_holm"] is not None]
    smallest = min(pooled, key=lambda r: r["p_value"])
    assert smallest["p_holm"] == pytest.approx(min(1.0, smallest["p_value"] * len(pooled)))


def _report_copy(sweep, tmp_path, **settings):
    """A copy of the sweep without its report cache, and a function that reports on it (with its cache stats)."""
    plan_path = sweep[0]
    copy = tmp_path / "sweep"
    shutil.copytree(plan_path.parent, copy, ignore=shutil.ignore_patterns("report", "features", ".report-cache"))
    notices = []

    def report(**changes):
        tables = build_report(ReportConfig(plan=str(copy / "plan.json"), **{**REPORT_SETTINGS, **settings, **changes}),
                              log=notices.append)
        out = write_report(tables, copy / "report", log=lambda line: None)
        return tables, (out / "results.csv").read_text(), (out / "comparisons.csv").read_text()

    return copy, report, notices


def test_a_second_report_reads_every_entry_from_the_cache_and_gives_the_same_csvs(sweep, tmp_path):
    _, report, _ = _report_copy(sweep, tmp_path)
    uncached, rows, comparisons = report(use_cache=False)
    assert uncached["cache"]["reused"] == [] and (sweep[0].parent / ".report-cache").is_dir()
    first, rows_first, comparisons_first = report()
    assert first["cache"]["reused"] == [] and len(first["cache"]["computed"]) == len(uncached["cache"]["computed"])
    second, rows_second, comparisons_second = report()
    assert second["cache"]["computed"] == [] and len(second["cache"]["reused"]) == len(first["cache"]["computed"])
    assert rows == rows_first == rows_second and comparisons == comparisons_first == comparisons_second
    assert rows == (sweep[2] / "results.csv").read_text()  # the fixture's report, made with a fresh cache of its own


def test_adding_one_run_recomputes_only_its_entries_and_those_built_from_it(sweep, tmp_path):
    copy, report, _ = _report_copy(sweep, tmp_path)
    added = copy / "results" / "single-L1-s1"
    held = tmp_path / "held"
    shutil.move(added, held)
    before, _, _ = report()
    shutil.move(held, added)
    tables, rows, comparisons = report()
    computed = tables["cache"]["computed"]
    own = {(("single", (1,)), 1, lang) for lang in ("en", "de", "ja")}
    assert own <= set(computed)
    newly_shown = set(tables["few_shot"]) - set(before["few_shot"])  # e.g. layer 1 became the best single layer

    def built_from_it(label):
        key, seed = label[0], label[1]
        if label[-1] == "few-shot" and key in newly_shown:
            return True
        if key[0] == "single":
            return key[1] == (1,) and seed == 1
        if key[0] == "late":  # late fusion of the added layer; seed s fuses seed s's runs; and the top-k layers,
            return 1 in key[1] and (seed == 1 or key == tables["late_top"])  # chosen anew with the added run
        return key[0] == "ensemble"  # the seed ensemble of the best single layer (chosen anew with the added run)

    assert all(built_from_it(label) for label in computed), [label for label in computed if not built_from_it(label)]
    assert rows == (sweep[2] / "results.csv").read_text()
    assert comparisons == (sweep[2] / "comparisons.csv").read_text()


def test_a_changed_predictions_file_invalidates_its_entries(sweep, tmp_path):
    copy, report, _ = _report_copy(sweep, tmp_path)
    report()
    path = copy / "results" / "single-L2-s0" / "predictions.npz"
    with np.load(path) as arrays:
        changed = {name: arrays[name] for name in arrays.files}
    changed["test-de/logits"] = changed["test-de/logits"] * 1.5
    np.savez_compressed(path, **changed)
    (path.parent / "manifest.json").unlink()  # the result changed on purpose: checked whole, as an older result
    tables, _, _ = report()
    computed = tables["cache"]["computed"]
    assert (("single", (2,)), 0, "de") in computed
    assert (("single", (2,)), 0, "ja") not in computed  # its other parts did not change


def test_a_truncated_cache_entry_is_recomputed_with_a_notice(sweep, tmp_path):
    copy, report, notices = _report_copy(sweep, tmp_path)
    _, rows, _ = report()
    def is_member_entry(path):  # the cache also holds late fusion's fitted maps, which are not counted as units
        with np.load(path) as arrays:
            return "resampled" in arrays.files

    entry = next(path for path in sorted((copy / ".report-cache").rglob("*.npz")) if is_member_entry(path))
    entry.write_bytes(entry.read_bytes()[:100])
    notices.clear()
    tables, rows_again, _ = report()
    assert len(tables["cache"]["computed"]) == 1 and rows_again == rows
    damaged = [line for line in notices if "report cache:" in line]
    assert len(damaged) == 1 and f"{entry} is damaged" in damaged[0] and "recomputing it" in damaged[0]


@pytest.mark.parametrize("change", [{"n_resamples": 300}, {"seed": 1}, "bins"])
def test_changed_settings_do_not_reuse_entries(sweep, tmp_path, change):
    copy, report, _ = _report_copy(sweep, tmp_path)
    report()
    if change == "bins":  # the plan's bins: recorded in every run's settings, read by the report from the plan
        plan = json.loads((copy / "plan.json").read_text())
        plan.setdefault("train_resolved", dict(plan["train"]))["bins"] = 10
        plan["train"]["bins"] = 10
        (copy / "plan.json").write_text(json.dumps(plan))
        for folder in (copy / "results").iterdir():
            config = json.loads((folder / "config.json").read_text())
            config["train"]["bins"] = 10
            (folder / "config.json").write_text(json.dumps(config))
            (folder / "manifest.json").unlink()
        change = {}
    tables, _, _ = report(**change)
    reused = tables["cache"]["reused"]
    assert [label for label in reused if len(label) == 3] == []  # no (run, language) entry of the metrics
    if change != {"n_resamples": 300}:  # the few-shot draws depend on the seed and bins, not on the resamples
        assert reused == []


def write_alignment_csv(path, layers=range(3), languages=("de", "ja")):
    """An alignment.csv as xfuse align writes it, with made-up values that vary by layer and language."""
    from xfuse.features.align import MEASURES, VIEWS, to_csv

    rows = [{"layer": layer, "language": lang, "features": view, "measure": measure,
             "value": 0.1 * layer + 0.01 * number + 0.001 * len(measure), "low": None, "high": None, "pairs": 24,
             "missing": 0}
            for layer in layers for number, lang in enumerate(languages) for view in VIEWS for measure in MEASURES]
    path.write_text(to_csv(rows))
    return path


def test_the_alignment_section_sets_each_layer_beside_the_heads_and_correlates_across_layers(sweep, tmp_path):
    from scipy.stats import spearmanr

    from xfuse.report.alignment import add_alignment

    csv_path = write_alignment_csv(tmp_path / "alignment.csv")
    config = ReportConfig(plan=str(sweep[0]), alignment=str(csv_path), **REPORT_SETTINGS)
    tables = add_alignment(build_report(config, log=lambda line: None), log=lambda line: None)
    section = tables["alignment"]
    assert section["source"] == str(csv_path)
    assert sorted({(entry["layer"], entry["lang"]) for entry in section["per_layer"]}) == \
        [(layer, lang) for layer in range(3) for lang in ("de", "ja")]
    entry = next(e for e in section["per_layer"] if e["layer"] == 2 and e["lang"] == "de")
    accuracy = lambda lang: lookup(tables, ("single", (2,)), lang, "uncalibrated", "accuracy")["value"]
    assert entry["accuracy_drop"] == pytest.approx(accuracy("en") - accuracy("de"))
    assert entry["retrieval_centred_scaled"] == pytest.approx(0.2 + 0.001 * len("retrieval_centred"))
    checked = 0
    for row in section["correlations"]:
        entries = section["per_layer"] if row["head"] == "single" else \
            [e for e in section["fusion"] if e["head"] == row["head"]]
        for lang, value in row["per_language"].items():
            points = [(e[f"{row['measure']}_{row['features']}"], e[row["quantity"]]) for e in entries
                      if e["lang"] == lang and e["learned"]]
            assert value["n"] == len(points)
            if value["rho"] is not None:
                assert value["rho"] == pytest.approx(spearmanr(*zip(*points)).statistic)
                checked += 1
    out = write_report(tables, tmp_path / "report", log=lambda line: None)
    text = (out / "report.md").read_text()
    assert "## Alignment and calibration" in text and "Spearman's rho across layers" in text
    assert (out / "figures" / "alignment_calibration.png").is_file() == any(e["learned"] for e in section["per_layer"])


def test_the_alignment_of_a_store_is_computed_once_and_cached(sweep, tmp_path, monkeypatch):
    from xfuse.report import alignment as module

    csv_path = write_alignment_csv(tmp_path / "made.csv")
    calls = []

    def fake_compute(config, progress=True, log=print):
        calls.append(config.store)
        from xfuse.features.align import read_alignment

        return {"rows": read_alignment(csv_path), "config": {}, "languages": ["de", "ja"], "layers": [0, 1, 2]}

    monkeypatch.setattr(module, "compute_alignment", fake_compute)
    monkeypatch.setattr(module, "write_alignment", lambda result, out, log: (Path(out).mkdir(parents=True),
                                                                              shutil.copy(csv_path, Path(out) / "alignment.csv")))
    plan = json.loads(sweep[0].read_text())
    first, source = module.load_alignment(plan, None, tmp_path / "cache")
    again, cached = module.load_alignment(plan, None, tmp_path / "cache")
    assert calls == [plan["store"]] and "computed by this report" in source and "cached with the report" in cached
    assert plan["store"] not in source + cached  # named by fingerprint: reads the same from any folder
    assert first == again


def test_without_a_store_or_an_alignment_csv_the_section_says_it_is_not_there(sweep, tmp_path):
    from xfuse.report.alignment import load_alignment

    copy, _, _ = _report_copy(sweep, tmp_path)
    plan = json.loads((copy / "plan.json").read_text())
    rows, reason = load_alignment(dict(plan, store=str(tmp_path / "gone")), None, None)
    assert rows is None and "the plan's features store is not on this machine" in reason
    tables = build_report(ReportConfig(plan=str(copy / "plan.json"), **REPORT_SETTINGS), log=lambda line: None)
    tables["alignment"] = {"source": reason}
    text = (write_report(tables, copy / "report", log=lambda line: None) / "report.md").read_text()
    assert f"## Alignment and calibration\n\nNot there: {reason}." in text


def test_the_stability_table_counts_the_learned_seeds_of_every_configuration(sweep):
    from xfuse.report.render import render_stability, stability_table

    _, tables, out = sweep
    table = stability_table(tables)
    rows = [row for row in read_rows(out) if row["seed"] == "mean" and row["lang"] == "en"
            and row["condition"] == "uncalibrated" and row["metric"] == "accuracy"]
    for row in rows:
        if row["head"] in ("constant", "ensemble"):
            continue
        layer = int(row["lower_layer"]) if row["lower_layer"] else row["layers"]
        assert table[row["head"]][layer] == (int(row["learned_seeds"]), int(row["seeds"]))
    text = (out / "report.md").read_text()
    assert "## Stability: seeds on which the head learned" in text
    single = table["single"]
    assert f"| single | {single[0][0]}/{single[0][1]} | {single[1][0]}/{single[1][1]} | {single[2][0]}/{single[2][1]} |" \
        in "\n".join(render_stability(tables))


class _Run:
    def __init__(self, seed, learned):
        self.seed, self.learned = seed, {"learned": learned}


def _subset_job(learned: dict, seeds: int = 5):
    """A one-language job of three configurations with hand-set per-seed ECEs ((seed mod 2 + offset) / 100) and the
    arrays :func:`xfuse.report.tables._comparisons` reads; ``learned``: key -> per-seed flags."""
    best, last, fused = ("single", (7,)), ("single", (12,)), ("aif", (4, 12))
    offsets = {best: 0.0, last: 0.5, fused: 1.0}
    rng = np.random.default_rng(0)
    configurations = {key: [_Run(seed, flag) for seed, flag in zip(range(seeds), learned[key])] for key in offsets}
    kept = {}
    for key, offset in offsets.items():
        values = (np.arange(seeds) % 2 + offset) / 100  # (S,)
        resampled = values[None, :] + rng.normal(0, 0.001, (200, seeds))  # (R, S)
        row = {"lower_layer": key[1][0], "kind": "trained"}
        kept[(key, "uncalibrated", "ece")] = (values, resampled, row, np.full(seeds, 0.004) + offset / 1000)
    job = {"metrics": ("ece",), "configurations": configurations, "references": {"best_single": best,
                                                                                 "last_layer": last},
           "kinds": {key: "trained" for key in offsets}, "primary": [last, best, fused], "conditions": ("uncalibrated",),
           "late_against_early": None}
    return job, kept, best, last, fused


def test_learned_seed_comparisons_redo_only_partial_sides_on_their_learned_seeds():
    from xfuse.report.tables import _comparisons

    job, kept, best, last, fused = _subset_job({("single", (7,)): [True] * 5, ("single", (12,)): [True] * 5,
                                                ("aif", (4, 12)): [False, True, False, True, True]})
    rows = {(row["reference"], row["head"]): row for row in _comparisons(job, kept, "de")}
    conditional = rows[("best_single_learned", "aif")]  # seeds 1, 3, 4 of aif against all five of the best single
    assert conditional["seeds"] == 3 and conditional["reference_seeds"] == 5 and conditional["learned"]
    assert conditional["delta"] == pytest.approx((np.mean([1, 1, 0]) + 1.0 - np.mean([0, 1, 0, 1, 0])) / 100)
    assert conditional["noise_floor"] == pytest.approx(0.005) and conditional["family"] == "primary_learned"
    assert not rows[("best_single", "aif")]["learned"] and rows[("best_single", "aif")]["seeds"] == 5
    assert ("best_single_learned", "single") not in rows  # both sides learned on every seed: nothing redone
    job, kept, *_ = _subset_job({("single", (7,)): [True] * 5, ("single", (12,)): [True] * 5,
                                 ("aif", (4, 12)): [False, False, False, True, False]})
    assert not any(row["reference"].endswith("_learned") for row in _comparisons(job, kept, "de"))  # one learned seed


def test_three_seed_comparisons_take_the_first_three_seeds_of_each_side():
    from xfuse.report.tables import _comparisons

    job, kept, best, last, fused = _subset_job({key: [True] * 5 for key in (("single", (7,)), ("single", (12,)),
                                                                         ("aif", (4, 12)))})
    rows = {(row["reference"], row["head"], row["layers"]): row for row in _comparisons(job, kept, "de")}
    three = rows[("last_layer_3seeds", "aif", "4_12")]
    assert three["seeds"] == three["reference_seeds"] == 3 and three["family"] == "primary_3seeds"
    assert three["delta"] == pytest.approx(0.005)  # seeds 0-2: (1 + s mod 2) / 100 against (0.5 + s mod 2) / 100
    full = rows[("last_layer", "aif", "4_12")]
    assert full["high"] - full["low"] < three["high"] - three["low"]  # seed variances 0.3 and 1/3: 5 seeds narrower
    job, kept, *_ = _subset_job({key: [True] * 3 for key in (("single", (7,)), ("single", (12,)), ("aif", (4, 12)))},
                                seeds=3)
    assert not any(row["reference"].endswith("_3seeds") for row in _comparisons(job, kept, "de"))  # nothing to drop


def test_delta_matrix_leaves_calibration_cells_blank_where_a_side_did_not_learn():
    rows = [{"reference": "best_single", "lang": "de", "condition": "uncalibrated", "metric": metric, "head": head,
             "lower_layer": lower, "delta": delta, "significant": True, "learned": learned}
            for metric in ("ece", "accuracy")
            for head, lower, delta, learned in (("aif", 0, 0.1, False), ("aif", 1, 0.2, True), ("dlfa", 1, 0.3, True))]
    tables = {"comparisons": rows}
    heads, lowers, deltas, significant = delta_matrix(tables, "ece", "uncalibrated", "de")
    assert heads == ["aif", "dlfa"] and lowers == [0, 1]
    np.testing.assert_array_equal(deltas, [[np.nan, 0.2], [np.nan, 0.3]])  # dlfa on 0 not run; aif on 0 not learned
    assert significant.tolist() == [[False, True], [False, True]]
    _, _, accuracy, _ = delta_matrix(tables, "accuracy", "uncalibrated", "de")
    np.testing.assert_array_equal(accuracy, [[0.1, 0.2], [np.nan, 0.3]])  # accuracy is shown whether or not learned
