"""xfuse report on a tiny sweep: values against independent recomputation, paired tests, sections, figure content."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from scipy.special import softmax

from xfuse import calibration as cal
from xfuse.errors import XfuseError
from xfuse.figures import (accuracy_vs_ece_figure, delta_heatmap_figure, delta_matrix, figure_specs,
                           reliability_figure)
from xfuse.report import (REPORT_METRICS, ReportConfig, bootstrap_p_value, build_report, holm, rows_to_csv,
                          write_report)
from xfuse.sweep import SweepSpec, make_plan, run_local, run_task

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


def pick(rows, head, layers, lang, condition, metric):
    (row,) = [r for r in rows if (r["head"], r["layers"], r["lang"], r["condition"], r["metric"]) ==
              (head, layers, lang, condition, metric)]
    return row


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_bootstrap_p_value():
    rng = np.random.default_rng(0)
    resamples = rng.normal(0.1, 0.05, 100_000)  # z = 0.1 / 0.05 = 2: p = 0.0455
    assert bootstrap_p_value(0.1, resamples) == pytest.approx(0.0455, abs=0.001)
    assert bootstrap_p_value(0.0, rng.normal(0, 1, 1000)) == 1.0
    assert bootstrap_p_value(0.0, np.zeros(10)) == 1.0 and bootstrap_p_value(0.2, np.full(10, 0.2)) == 0.0
    # far below 2 / (R + 1): Holm over hundreds of comparisons can still find it
    assert bootstrap_p_value(0.1, rng.normal(0.1, 0.01, 1000)) < 1e-10


def test_csv_holds_every_configuration_language_condition_and_metric(sweep):
    _, _, out = sweep
    rows = read_rows(out)
    assert len(rows) == CONFIGURATIONS * 3 * 5 * len(REPORT_METRICS)  # 3 languages, 5 conditions
    baseline = [r for r in rows if (r["head"], r["layers"]) == ("single", "2")]
    assert all(r["delta"] == "" and r["p_value"] == "" for r in baseline)
    others = [r for r in rows if (r["head"], r["layers"]) != ("single", "2")]
    assert all(float(r["p_holm"]) >= float(r["p_value"]) - 1e-12 for r in others)
    assert all(r["significant"] in ("True", "False") for r in others)
    assert {r["seeds"] for r in rows} == {"2"}


def test_values_equal_an_independent_recomputation_from_the_predictions(sweep):
    plan_path, _, out = sweep
    rows = read_rows(out)
    results = plan_path.parent / "results"
    for head, layers, lang, condition in (("aif", "1_2", "de", "zero_shot_ts"), ("single", "2", "ja", "oracle_ts"),
                                          ("scalar_mix", "0_1_2", "en", "uncalibrated"),
                                          ("dlfa", "0_2", "de", "oracle_bias"), ("mean", "1_2", "ja", "zero_shot_bias")):
        values = {metric: [] for metric in ("accuracy", "ece", "nll")}
        for seed in (0, 1):
            folder = results / f"{head}-L{layers}-s{seed}"
            metrics = json.loads((folder / "metrics.json").read_text())
            with np.load(folder / "predictions.npz") as arrays:
                logits, labels = arrays[f"test-{lang}/logits"], arrays[f"test-{lang}/labels"]
            if condition.endswith("_bias"):  # P(y = 1) = sigmoid(a (z1 - z0) + b), the fitted (a, b)
                fit = (metrics["fits"] if condition.startswith("zero") else metrics["languages"][lang]["fits"])[condition]
                positive = 1 / (1 + np.exp(-(fit["slope"] * (logits[:, 1] - logits[:, 0]).astype(np.float64) + fit["bias"])))
                probs = np.stack([1 - positive, positive], axis=1)
            else:
                temperature = {"uncalibrated": 1.0, "zero_shot_ts": metrics["zero_shot_temperature"],
                               "oracle_ts": metrics["languages"][lang]["oracle_temperature"]}[condition]
                probs = softmax(logits.astype(np.float64) / temperature, axis=1)
            values["accuracy"].append(metrics["languages"][lang][condition]["accuracy"]["value"])
            values["ece"].append(cal.ece(probs, labels, 15))
            values["nll"].append(metrics["languages"][lang][condition]["nll"]["value"])
        for metric, per_seed in values.items():
            assert float(pick(rows, head, layers, lang, condition, metric)["value"]) == pytest.approx(np.mean(per_seed), abs=1e-5)
    row, base = pick(rows, "dlfa", "0_2", "de", "uncalibrated", "ece"), pick(rows, "single", "2", "de", "uncalibrated", "ece")
    assert float(row["delta"]) == pytest.approx(float(row["value"]) - float(base["value"]), abs=1e-5)
    assert float(row["delta_low"]) <= float(row["delta_high"])


def test_markdown_has_every_section_and_the_csv_numbers(sweep):
    _, tables, out = sweep
    text = (out / "report.md").read_text()
    for heading in ("# xfuse report", "## Findings", "## Baseline and fusion heads at their best lower layer",
                    "### Uncalibrated",
                    "### Zero-shot temperature scaling", "### Oracle temperature scaling",
                    "### Zero-shot temperature plus bias", "### Oracle temperature plus bias",
                    "## Few-shot temperature scaling",
                    "## Changes against the baseline", "### Significant changes across the whole grid",
                    "## Across layers", "### dlfa: ECE", "### single: accuracy", "## Figures", "## Provenance"):
        assert f"\n{heading}\n" in f"\n{text}", heading
    for name, *_ in figure_specs(tables):
        assert f"](figures/{name})" in text
    base = pick(read_rows(out), "single", "2", "de", "uncalibrated", "accuracy")
    assert f"| single [2] | de | {float(base['value']):.3f} [{float(base['low']):.3f}, {float(base['high']):.3f}] |" in text
    assert "12 done" not in text and f"{CONFIGURATIONS * 2} tasks: {CONFIGURATIONS * 2} done, 0 failed, 0 missing" in text
    assert json.loads((out / "report_config.json").read_text())["report"]["n_resamples"] == 200
    # findings quote the tables: the baseline's accuracy range and each fusion head at its best lower layer
    accuracy = [float(pick(read_rows(out), "single", "2", lang, "uncalibrated", "accuracy")["value"])
                for lang in tables["languages"]]
    assert f"reaches accuracy {min(accuracy):.3f} to {max(accuracy):.3f} across the 3 languages" in text
    for head, key in tables["best_lower"].items():
        assert f"- `{head}` (lower layer {key[1][0]}) against the baseline: accuracy changes from" in text
    # provenance: data counts per file from the store, versions
    assert "| ja/test_2k.tsv | 23 | 1 | 0 | 0 |" in text and "torch 2.13.0" in text
    assert "Leakage check of the training file against every evaluated file, by content: 0 exact sentence" in text


def test_figures_are_written_and_show_the_tables(sweep):
    _, tables, out = sweep
    names = sorted(path.name for path in (out / "figures").glob("*.png"))
    assert names == sorted(name for name, *_ in figure_specs(tables)) and len(names) == 7
    for name in names:
        pixels = mpimg.imread(out / "figures" / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels[..., :3].std() > 0.05, name

    figure = delta_heatmap_figure(tables, "ece", "uncalibrated")
    panels = [axis for axis in figure.axes if axis.images]
    assert [axis.get_title() for axis in panels] == tables["languages"]
    for axis, lang in zip(panels, tables["languages"]):
        heads, lowers, deltas, _ = delta_matrix(tables, "ece", "uncalibrated", lang)
        assert heads == ["aif", "concat", "dlfa", "mean"] and lowers == [0, 1]
        np.testing.assert_allclose(axis.images[0].get_array(), deltas)
        assert [tick.get_text() for tick in axis.get_yticklabels()] == heads
    assert "against the baseline" in figure.axes[-1].get_ylabel()  # the colour bar

    figure = reliability_figure(tables)
    for axis in figure.axes:
        labels = [line.get_label() for line in axis.get_lines()]
        assert labels[0] == "perfect calibration" and labels[1] == "single [2]" and len(labels) == 3
        assert axis.get_xlabel() == "confidence (top label)" and axis.get_ylabel() == "accuracy"

    figure = accuracy_vs_ece_figure(tables)
    (axis,) = figure.axes
    assert len(axis.collections) == CONFIGURATIONS * len(tables["languages"])
    assert axis.get_xlabel() == "ECE (uncalibrated)" and len(axis.get_legend().get_texts()) == 6  # heads


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
    before_provenance = lambda path: path.read_text().split("\n## Provenance\n")[0]  # measured times differ
    assert before_provenance(resumed / "report.md") == before_provenance(out / "report.md")


def test_report_needs_the_baseline_and_finished_tasks(tiny_encoder, mini_pawsx, tmp_path):
    grids = [{"heads": ["single"], "layers": [[-1], [0]]}]
    plan_path = plan_sweep(tmp_path / "sweep", tiny_encoder, mini_pawsx, grids=grids, seeds=[0])
    with pytest.raises(XfuseError, match=r"no finished task yet; run xfuse sweep submit first"):
        build_report(ReportConfig(plan=str(plan_path)), log=lambda line: None)
    run_local(plan_path, progress=False, log=lambda line: None)
    shutil.rmtree(plan_path.parent / "results" / "single-L2-s0")
    with pytest.raises(XfuseError, match=r"the baseline \(single on layer 2\) has no finished run"):
        build_report(ReportConfig(plan=str(plan_path)), log=lambda line: None)
    with pytest.raises(XfuseError, match=r"--bootstrap: expected at least 100 resamples, got 10"):
        build_report(ReportConfig(plan=str(plan_path), n_resamples=10), log=lambda line: None)


def test_csv_formatting_is_stable():
    text = rows_to_csv([{"head": "aif", "layers": "4_12", "lower_layer": 4, "value": 0.123456789, "significant": True}])
    assert text.splitlines()[1].startswith("aif,4_12,4,,,,,,0.123457,")  # head, layers, lower, seeds, invalid_seeds, lang, condition, metric


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
    parallel = build_report(ReportConfig(plan=str(plan_path), n_resamples=200, workers=2), log=lambda line: None)
    assert parallel["rows"] == tables["rows"]


def test_few_shot_section_equals_a_direct_computation_from_the_predictions(sweep):
    from xfuse.fewshot import few_shot_ts

    plan_path, tables, out = sweep
    means = []
    for seed in (0, 1):
        with np.load(plan_path.parent / "results" / f"single-L2-s{seed}" / "predictions.npz") as arrays:
            result = few_shot_ts(arrays["dev-de/logits"], arrays["dev-de/labels"], arrays["test-de/logits"],
                                 arrays["test-de/labels"], ks=(4, 12), draws=5, seed=0, metrics=("ece",))
        means.append(result[12]["ece"]["mean"])
    assert tables["few_shot"][tables["baseline"]]["de"][12]["mean"] == pytest.approx(np.mean(means), rel=1e-12)
    assert f"| single [2] | de | " in (out / "report.md").read_text()
    assert f"{np.mean(means):.3f} ± " in (out / "report.md").read_text()


def test_reports_on_results_without_the_bias_conditions_leave_them_out(sweep, tmp_path):
    from xfuse.report import conditions_of

    plan_path, tables, _ = sweep
    assert tables["conditions"] == ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias", "oracle_bias")

    class Old:
        metrics = {"languages": {"de": {"uncalibrated": {}, "zero_shot_ts": {}, "oracle_ts": {}}}}

    assert conditions_of([Old()]) == ("uncalibrated", "zero_shot_ts", "oracle_ts")
