"""Figures of a sweep report, drawn from the tables of :func:`xfuse.report.tables.build_report` (no computing here).

Each ``*_figure`` function returns a matplotlib ``Figure`` (Agg backend, no
display needed); :func:`save_figures` writes them all as PNG:

- ``delta_<metric>_<condition>.png``: per language, a heatmap of the change
  against the best single layer (chosen on English dev) over lower layer
  (columns) x fusion head (rows, late fusion included); ``*`` marks a change
  significant at the seed level after Holm's correction;
- ``reliability.png``: per language, reliability diagrams (top-label
  confidence) of the last layer, the best single layer and the best
  configuration (lowest dev-en loss), with the number of test examples in
  each bin drawn under them (a bin of a few examples is noise, not a collapse);
- ``signed_calibration_error.png``: mean confidence minus accuracy (above 0:
  overconfident) against the language, with 95% seed-level intervals;
- ``accuracy_vs_ece.png``: accuracy against ECE, every configuration and language;
- ``ece_temperature_scaling.png``: per language, the ECE of the baseline and
  of each fusion head at its best lower layer, uncalibrated, after zero-shot
  and after oracle temperature scaling.

Usage::

    figure = delta_heatmap_figure(tables, "ece", "uncalibrated")
    figure.savefig("delta_ece.png")
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xfuse.calibration.metrics import bin_edges, reliability_bins  # noqa: E402
from xfuse.report.tables import CALIBRATION_METRICS, CONSTANT, lookup  # noqa: E402

METRIC_LABELS = {"accuracy": "accuracy", "ece": "ECE", "adaptive_ece": "adaptive ECE", "smooth_ece": "smooth ECE",
                 "brier": "Brier score", "nll": "NLL", "mce": "MCE", "classwise_ece": "classwise ECE",
                 "signed_calibration_error": "confidence - accuracy", "brier_reliability": "Brier calibration part",
                 "brier_refinement": "Brier refinement part", "auroc": "AUROC (right vs wrong)",
                 "aurc": "risk-coverage area"}
CONDITION_LABELS = {"uncalibrated": "uncalibrated", "zero_shot_ts": "zero-shot temperature scaling",
                    "oracle_ts": "oracle temperature scaling", "zero_shot_bias": "zero-shot temperature plus bias",
                    "oracle_bias": "oracle temperature plus bias"}
HEAD_MARKERS = {"single": "o", "dlfa": "s", "aif": "^", "concat": "D", "mean": "v", "scalar_mix": "*", "late": "P",
                "constant": "x"}


def configuration_label(key: tuple) -> str:
    head, layers = key
    if key == CONSTANT:
        return "constant"
    return f"{head} [{', '.join(map(str, layers))}]" if len(layers) <= 3 else f"{head} [{layers[0]}..{layers[-1]}]"


def _grid(count: int, width: float = 3.6, height: float = 3.0):
    columns = min(4, count)
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                                constrained_layout=True)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, axes.flat[:count]


def delta_matrix(tables: dict, metric: str, condition: str, lang: str) -> tuple:
    """(heads, lower layers, deltas against the best single layer (heads x layers, NaN where not run, and for a
    calibration metric where a side did not learn on every seed), significance)."""
    rows = [row for row in tables["comparisons"] if row["reference"] == "best_single" and row["lang"] == lang
            and row["condition"] == condition and row["metric"] == metric and row["lower_layer"] is not None
            and row["head"] != "single"]
    heads = sorted({row["head"] for row in rows})
    lowers = sorted({row["lower_layer"] for row in rows})
    deltas = np.full((len(heads), len(lowers)), np.nan)
    significant = np.zeros((len(heads), len(lowers)), dtype=bool)
    for row in rows:
        if metric in CALIBRATION_METRICS and not row["learned"]:
            continue  # calibration at the prior is calibration by construction: left blank
        position = heads.index(row["head"]), lowers.index(row["lower_layer"])
        deltas[position], significant[position] = row["delta"], row["significant"]
    return heads, lowers, deltas, significant


def delta_heatmap_figure(tables: dict, metric: str, condition: str):
    languages = tables["languages"]
    matrices = [delta_matrix(tables, metric, condition, lang) for lang in languages]
    limit = max([np.nanmax(np.abs(m[2])) for m in matrices if m[2].size and not np.all(np.isnan(m[2]))] + [1e-6])
    # Blue is better: lower is better for every metric but accuracy.
    colormap = "RdBu" if metric == "accuracy" else "RdBu_r"
    figure, axes = _grid(len(languages), width=max(3.6, 0.45 * len(matrices[0][1]) + 1.5))
    image = None
    for axis, lang, (heads, lowers, deltas, significant) in zip(axes, languages, matrices):
        image = axis.imshow(deltas, cmap=colormap, vmin=-limit, vmax=limit, aspect="auto")
        axis.set_xticks(range(len(lowers)), [str(layer) for layer in lowers])
        axis.set_yticks(range(len(heads)), heads)
        axis.set_xlabel("lower layer (fused with the last)")
        axis.set_title(lang)
        for (i, j), flag in np.ndenumerate(significant):
            if flag:
                axis.text(j, i, "*", ha="center", va="center", fontsize=12, color="black")
            elif metric in CALIBRATION_METRICS and (heads[i], (lowers[j], tables["last"])) in tables["not_learned"]:
                axis.text(j, i, "‡", ha="center", va="center", fontsize=10, color="grey")
    figure.colorbar(image, ax=list(axes), label=f"change in {METRIC_LABELS[metric]} against the best single layer")
    figure.suptitle(f"Change in {METRIC_LABELS[metric]} against {configuration_label(tables['best_single'])} (best "
                    f"single layer on dev-en), {CONDITION_LABELS[condition]} (* seed-level, significant after Holm"
                    + ("; ‡ blank: not learned on every seed" if metric in CALIBRATION_METRICS else "") + ")")
    return figure


def best_configuration(tables: dict) -> tuple:
    """The fusion configuration with the lowest dev-en loss (selection on English dev, never on test)."""
    candidates = list(tables["best_lower"].values())
    return min(candidates, key=lambda key: tables["dev_en_loss"][key]) if candidates else None


def reliability_figure(tables: dict):
    languages = tables["languages"]
    best = best_configuration(tables)
    shown = list(dict.fromkeys([tables["baseline"], tables["best_single"]] + ([best] if best else [])))
    colors = ("tab:orange", "tab:green", "tab:blue")
    figure, grid = plt.subplots(2 * int(np.ceil(len(languages) / 4)), min(4, len(languages)), squeeze=False,
                                figsize=(3.6 * min(4, len(languages)), 4.2 * int(np.ceil(len(languages) / 4))),
                                gridspec_kw={"height_ratios": [3, 1] * int(np.ceil(len(languages) / 4))},
                                constrained_layout=True)
    for number in range(grid.shape[0] // 2 * grid.shape[1]):
        row, column = 2 * (number // grid.shape[1]), number % grid.shape[1]
        axis, counts_axis = grid[row, column], grid[row + 1, column]
        if number >= len(languages):
            axis.set_visible(False)
            counts_axis.set_visible(False)
            continue
        lang = languages[number]
        axis.plot([0.5, 1], [0.5, 1], color="grey", linestyle=":", label="perfect calibration")
        width = 0.5 / tables["bins"] / (len(shown) + 1)
        for offset, (key, color) in enumerate(zip(shown, colors)):
            confidence, correct = tables["reliability"][(key, lang)]
            table = reliability_bins(confidence, correct, bin_edges(confidence, tables["bins"]))
            filled = table["count"] > 0
            axis.plot(table["confidence"][filled], table["accuracy"][filled], marker="o", color=color,
                      label=configuration_label(key))
            centres = (table["edges"][:-1] + table["edges"][1:]) / 2
            counts_axis.bar(centres + (offset - (len(shown) - 1) / 2) * width, table["count"], width, color=color)
        for target in (axis, counts_axis):
            target.set_xlim(0.5, 1)
        axis.set_ylim(0, 1)
        axis.set_ylabel("accuracy")
        axis.set_title(lang)
        axis.legend(fontsize=7, loc="lower right")
        counts_axis.set_yscale("log")
        counts_axis.set_xlabel("confidence (top label)")
        counts_axis.set_ylabel("examples")
    figure.suptitle("Reliability diagrams on test, uncalibrated (all seeds pooled), with each bin's examples below")
    return figure


def signed_error_figure(tables: dict, condition: str = "uncalibrated"):
    """Mean confidence minus accuracy against the language, with 95% seed-level intervals."""
    keys = list(dict.fromkeys([tables["baseline"], tables["best_single"]] + list(tables["best_lower"].values())))
    figure, axis = plt.subplots(figsize=(8.5, 4.8), constrained_layout=True)
    languages = tables["languages"]
    spread = 0.6 / max(1, len(keys))
    for number, key in enumerate(keys):
        rows = [lookup(tables, key, lang, condition, "signed_calibration_error") for lang in languages]
        positions = np.arange(len(languages)) + (number - (len(keys) - 1) / 2) * spread
        values = np.array([row["value"] for row in rows])
        errors = np.array([[row["value"] - row["low"] for row in rows], [row["high"] - row["value"] for row in rows]])
        learned = key not in tables["not_learned"]
        axis.errorbar(positions, values, yerr=errors, marker=HEAD_MARKERS.get(key[0], "o"),
                      linestyle="-" if learned else ":", alpha=1.0 if learned else 0.4, capsize=2,
                      label=configuration_label(key) + ("" if learned else " ‡ (not learned on every seed)"))
    axis.axhline(0, color="grey", linewidth=1)
    axis.set_xticks(range(len(languages)), languages)
    axis.set_xlabel("test language")
    axis.set_ylabel("mean confidence - accuracy")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.set_title(f"Over- (> 0) and under-confidence, {CONDITION_LABELS[condition]}, 95% seed-level intervals")
    return figure


def accuracy_vs_ece_figure(tables: dict, condition: str = "uncalibrated"):
    figure, axis = plt.subplots(figsize=(8.5, 5.5), constrained_layout=True)
    colors = dict(zip(tables["languages"], plt.get_cmap("tab10").colors))
    heads_seen = set()
    for key in tables["configurations"]:
        if key == CONSTANT:
            continue
        for lang in tables["languages"]:
            accuracy = lookup(tables, key, lang, condition, "accuracy")["value"]
            ece = lookup(tables, key, lang, condition, "ece")["value"]
            is_baseline, learned = key == tables["baseline"], key not in tables["not_learned"]
            axis.scatter(ece, accuracy, color=colors[lang] if learned else "none", marker=HEAD_MARKERS.get(key[0], "o"),
                         s=80 if is_baseline else 30, alpha=0.8,
                         edgecolors="black" if is_baseline else (colors[lang] if not learned else "none"))
        heads_seen.add(key[0])
    language_handles = [plt.Line2D([], [], color=colors[lang], marker="o", linestyle="", label=lang)
                        for lang in tables["languages"]]
    head_handles = [plt.Line2D([], [], color="grey", marker=HEAD_MARKERS.get(head, "o"), linestyle="", label=head)
                    for head in sorted(heads_seen)]
    first = axis.legend(handles=language_handles, title="language", loc="upper left", bbox_to_anchor=(1.02, 1),
                        fontsize=8)
    axis.add_artist(first)
    axis.legend(handles=head_handles, title="head (baseline:\nblack edge)", loc="lower left", bbox_to_anchor=(1.02, 0),
                fontsize=8)
    axis.set_xlabel(f"ECE ({CONDITION_LABELS[condition]})")
    axis.set_ylabel("accuracy")
    axis.set_title("Accuracy against ECE on test, every configuration (mean over seeds; hollow: not learned on every "
                   "seed, its ECE is that of a head at the prior)")
    return figure


def ece_temperature_figure(tables: dict, metric: str = "ece"):
    keys = list(dict.fromkeys([tables["baseline"], tables["best_single"]] + list(tables["best_lower"].values())))
    conditions = ("uncalibrated", "zero_shot_ts", "oracle_ts")
    figure, axes = _grid(len(tables["languages"]), width=max(3.6, 0.9 * len(keys) + 1))
    width = 0.8 / len(conditions)
    for axis, lang in zip(axes, tables["languages"]):
        for number, (condition, color) in enumerate(zip(conditions, ("tab:red", "tab:blue", "tab:green"))):
            rows = [lookup(tables, key, lang, condition, metric) for key in keys]
            positions = np.arange(len(keys)) + (number - 1) * width
            axis.bar(positions, [r["value"] for r in rows], width, color=color, label=CONDITION_LABELS[condition])
            axis.vlines(positions, [r["low"] for r in rows], [r["high"] for r in rows], color="black", linewidth=1)
        axis.set_xticks(range(len(keys)), [configuration_label(key) for key in keys], rotation=45, ha="right",
                        fontsize=7)
        axis.set_ylabel(METRIC_LABELS[metric])
        axis.set_title(lang)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(conditions), fontsize=8)
    figure.suptitle(f"{METRIC_LABELS[metric]} before and after temperature scaling (95% seed-level intervals); "
                    "fusion at its best lower layer by dev-en loss")
    return figure


def few_shot_figure(tables: dict):
    """Per language: ECE against k for each configuration, with its zero-shot and oracle levels drawn across."""
    figure, axes = _grid(len(tables["languages"]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, lang in zip(axes, tables["languages"]):
        for (key, table), color in zip(tables["few_shot"].items(), colors):
            ks = sorted(table[lang])
            means = np.array([table[lang][k]["mean"] for k in ks])
            spread = np.array([table[lang][k]["std"] for k in ks])
            axis.plot(ks, means, marker=HEAD_MARKERS.get(key[0], "o"), color=color, label=configuration_label(key))
            axis.fill_between(ks, means - spread, means + spread, color=color, alpha=0.15)
            for condition, style in (("zero_shot_ts", "--"), ("oracle_ts", ":")):
                axis.axhline(lookup(tables, key, lang, condition, "ece")["value"], color=color, linestyle=style,
                             linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("labelled target-language dev examples k")
        axis.set_ylabel("ECE")
        axis.set_title(lang)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    figure.suptitle("Few-shot temperature scaling: ECE against k (band: spread over draws); "
                    "dashed: zero-shot TS, dotted: oracle TS")
    return figure


def alignment_calibration_figure(tables: dict):
    """Each learned ``single`` layer's ECE gap and accuracy drop from English against its alignment, one colour
    per language, points labelled by layer (the report's alignment section)."""
    section = tables["alignment"]
    panels = (("ece_gap", "ECE minus English's ECE"), ("accuracy_drop", "accuracy drop from English"))
    figure, axes = _grid(len(panels), width=4.2, height=3.4)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (quantity, title) in zip(axes, panels):
        for number, lang in enumerate(section["languages"]):
            entries = sorted((entry for entry in section["per_layer"] if entry["lang"] == lang and entry["learned"]
                              and quantity in entry), key=lambda entry: entry["layer"])
            x = [entry["retrieval_centred_scaled"] for entry in entries]
            y = [entry[quantity] for entry in entries]
            axis.plot(x, y, marker="o", markersize=3, linewidth=0.8, color=colours[number % len(colours)], label=lang)
            for entry, x_value, y_value in zip(entries, x, y):
                axis.annotate(str(entry["layer"]), (x_value, y_value), fontsize=6, xytext=(2, 2),
                              textcoords="offset points")
        axis.set_xlabel("translation retrieval, centred (scaled features)")
        axis.set_title(f"single heads: {title}", fontsize=9)
        axis.axhline(0, color="grey", linewidth=0.5)
    axes[0].legend(fontsize=7)
    return figure


def figure_specs(tables: dict) -> list:
    """(file name, caption, function, arguments) of every figure the tables support."""
    specs = []
    has_fusion = any(row["lower_layer"] is not None and row["head"] != "single" for row in tables["comparisons"])
    metrics = {row["metric"] for row in tables["rows"]}
    if has_fusion:
        for metric, condition in (("ece", "uncalibrated"), ("ece", "zero_shot_ts"), ("accuracy", "uncalibrated")):
            if metric in metrics:
                specs.append((f"delta_{metric}_{condition}.png",
                              f"Change in {METRIC_LABELS[metric]} against the best single layer, "
                              f"{CONDITION_LABELS[condition]}",
                              delta_heatmap_figure, (metric, condition)))
    specs.append(("reliability.png", "Reliability diagrams of the last layer, the best single layer and the best "
                  "configuration, with each bin's number of examples", reliability_figure, ()))
    if "signed_calibration_error" in metrics:
        specs.append(("signed_calibration_error.png", "Mean confidence minus accuracy against the language",
                      signed_error_figure, ()))
    if {"accuracy", "ece"} <= metrics:
        specs.append(("accuracy_vs_ece.png", "Accuracy against ECE", accuracy_vs_ece_figure, ()))
    if "ece" in metrics:
        specs.append(("ece_temperature_scaling.png", "ECE before and after temperature scaling",
                      ece_temperature_figure, ()))
    if "ece" in metrics and tables.get("few_shot"):
        specs.append(("few_shot_ts.png", "Few-shot temperature scaling: ECE against the number of target-language "
                      "labels", few_shot_figure, ()))
    if any(entry["learned"] for entry in tables.get("alignment", {}).get("per_layer", [])):
        specs.append(("alignment_calibration.png", "The single heads' ECE gap and accuracy drop from English against "
                      "the layer's cross-lingual alignment (learned layers only, labelled by layer)",
                      alignment_calibration_figure, ()))
    return specs


def save_figures(tables: dict, folder: Path) -> list:
    """Write every figure as PNG into ``folder``; returns (file name, caption) pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, caption, function, arguments in figure_specs(tables):
        figure = function(tables, *arguments)
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        saved.append((name, caption))
    return saved
