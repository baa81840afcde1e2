"""Benchmark at our users' scale: head training on a synthetic store of mBERT's shape, peak memory and pairs/s.

Writes, through xfuse's own store writer, a features store shaped like
mBERT's on the full English PAWS-X training set: hidden size 768, 12 layers
with 4 of the 13 hidden states stored (0, 4, 8, 12), 49,401 training pairs of
20 to 96 tokens (mean about 58), 2,000 pairs each of dev-en and test-de,
float16, random features (rows drawn from a pool of random rows, so writing
is not limited by the random number generator). It goes under
``benchmarks/out/`` (git-ignored) and is deleted afterwards unless ``--keep``.

Then, each in a fresh process with xfuse's defaults (``--memory-mb 2048``),
``scalar_mix`` over the 4 stored layers and a two-layer ``aif`` (4 and 12)
train a fixed number of steps and predict over test-de; printed: seconds,
pairs per second of training and of prediction, the peak resident memory of
the process, and what the previous loader (every needed layer of every part
read into memory first) would have held. Target: peak under 4 GB.

With ``--train-heads``, each head then also runs through xfuse's whole
``train_heads`` (what ``xfuse train-heads`` calls) for one epoch with the
default recipe otherwise (train-en scaling statistics, dev-en predicted after
the epoch, then prediction and scoring of dev and test in en and de, which
the store then also holds), in a fresh process: its peak resident memory and
seconds, since it holds more than the training loop alone (the dev-en part
beside the training windows).

Usage::

    python benchmarks/train_scale.py [--steps 300] [--train-heads] [--keep] [--out benchmarks/out/mbert-scale]
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from xfuse.features.store import FORMAT, FeatureStore, shards_dir, write_part, write_shard, write_store_settings
from xfuse.features.hashing import config_fingerprint

HIDDEN, DEPTH, STORED = 768, 12, (0, 4, 8, 12)
SHARD_PAIRS = 256
RUNS = {"scalar_mix": "0,4,8,12", "aif": "4,12"}


def parts_of(train_pairs: int, eval_pairs: int, evaluated: str) -> dict:
    """(split, lang) -> pairs: train-en and the evaluated parts named like ``dev-en,test-de``."""
    parts = {("train", "en"): train_pairs}
    for name in evaluated.split(","):
        split, lang = name.split("-")
        parts[(split, lang)] = eval_pairs
    return parts


def write_store(store_dir: Path, parts: dict, seed: int = 0) -> int:
    """The synthetic store; returns its bytes."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((1 << 16, HIDDEN), dtype=np.float32).astype(np.float16)  # 96 MiB of random rows
    settings = {"format": FORMAT, "encoder": "synthetic-mbert-shape", "encoder_revision": "random",
                "hidden_size": HIDDEN, "num_hidden_layers": DEPTH, "layers": list(STORED), "dtype": "float16",
                "max_length": 128, "prefix": ""}
    settings["fingerprint"] = config_fingerprint(settings)
    write_store_settings(store_dir, settings)
    total = 0
    for (split, lang), count in parts.items():
        lengths = rng.integers(20, 97, size=count)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        target = store_dir / f"{split}-{lang}-{'0' * 12}.h5"
        shards_dir(target).mkdir(parents=True, exist_ok=True)
        shard_paths, shard_tokens = [], []
        for index, first in enumerate(range(0, count, SHARD_PAIRS)):
            stop = min(first + SHARD_PAIRS, count)
            tokens = int(offsets[stop] - offsets[first])
            rows = np.empty((len(STORED), tokens, HIDDEN), dtype=np.float16)
            for position in range(len(STORED)):
                start = int(rng.integers(0, len(pool)))
                rows[position] = pool[(start + np.arange(tokens)) % len(pool)]
            shard_paths.append(shards_dir(target) / f"shard-{index:05d}.h5")
            shard_tokens.append(tokens)
            write_shard(shard_paths[-1], rows, STORED, {"first": first, "stop": stop})
        pairs = {"id": [f"{split}-{i}" for i in range(count)], "label": rng.integers(0, 2, size=count),
                 "offset": offsets, "second_start": (lengths // 2).astype(np.int32),
                 "input_ids": np.zeros(offsets[-1], dtype=np.int32)}
        attrs = {key: value for key, value in settings.items() if key != "fingerprint"}
        attrs.update(settings_fingerprint=settings["fingerprint"], split=split, lang=lang, data_file="synthetic",
                     dropped_not_translated=0, dropped_empty=0, dropped_unlabelled=0)
        write_part(target, shard_paths, shard_tokens, pairs, attrs)
        total += target.stat().st_size + sum(path.stat().st_size for path in shard_paths)
        print(f"wrote {split}-{lang}: {count} pairs, {offsets[-1]} tokens", flush=True)
    return total


def run_one(store_dir: Path, head: str, layers: str, steps: int, batch_size: int, memory_mb: float) -> dict:
    """In this process: train ``steps`` batches, then predict over test-de; times, rates, peak memory."""
    import torch

    from xfuse.heads.modules import build_head
    from xfuse.features.layers import parse_layers
    from xfuse.heads.loader import PartReader
    from xfuse.heads.train import default_threads, predict

    torch.set_num_threads(default_threads())
    store = FeatureStore(store_dir)
    chosen = list(parse_layers(layers, DEPTH))
    torch.manual_seed(0)
    model = build_head(head, HIDDEN, len(chosen))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    started = time.perf_counter()
    trained = 0
    with store.part("train", "en") as part:
        reader = PartReader(part, chosen, memory_bytes=int(memory_mb * 2**20))
        model.train()
        rng = np.random.default_rng(0)
        while trained < steps * batch_size:
            for batch in reader.epoch(batch_size, rng):
                loss = torch.nn.functional.cross_entropy(model(batch.features, batch.mask, batch.second_start),
                                                         batch.labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trained += len(batch)
                if trained >= steps * batch_size:
                    break
        resident = reader.resident
    training = time.perf_counter() - started
    started = time.perf_counter()
    with store.part("test", "de") as part:
        test = PartReader(part, chosen, memory_bytes=int(memory_mb * 2**20), prepare=False)  # read once, as xfuse does
        predict(model, test, batch_size)
        predicted = len(test)
    prediction = time.perf_counter() - started
    return {"head": head, "layers": layers, "steps": steps, "train_pairs": trained, "train_s": training,
            "train_pairs_per_s": trained / training, "predict_pairs": predicted, "predict_s": prediction,
            "predict_pairs_per_s": predicted / prediction, "train_whole_part_in_memory": resident,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_train_heads(store_dir: Path, head: str, layers: str, memory_mb: float, out: Path) -> dict:
    """In this process: xfuse's train_heads for one epoch; seconds and peak memory."""
    from xfuse.heads.train import TrainConfig, train_heads

    config = TrainConfig(store=str(store_dir), head=head, layers=layers, max_epochs=1, min_epochs=0,
                         n_resamples=200, memory_mb=memory_mb, out=str(out))
    started = time.perf_counter()
    result = train_heads(config, log=lambda line: None)
    metrics = json.loads((result / "metrics.json").read_text())
    return {"seconds": time.perf_counter() - started, "training_s": metrics["seconds"]["training"],
            "evaluation_s": metrics["seconds"]["evaluation"], "languages": sorted(metrics["languages"]),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def previous_loader_gib(store_dir: Path, layers: str) -> float:
    """What the previous loop held: the needed layers of every part of the store, float16, in memory."""
    store = FeatureStore(store_dir)
    count = len(layers.split(","))
    tokens = 0
    for path in store.part_paths():
        with store.part(*path.name.split("-")[:2]) as part:
            tokens += int(part.offsets[-1])
    return tokens * count * HIDDEN * 2 / 2**30


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/out/mbert-scale")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic store (reused by the next run)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-mb", type=float, default=2048)
    parser.add_argument("--train-pairs", type=int, default=49_401)
    parser.add_argument("--eval-pairs", type=int, default=2_000)
    parser.add_argument("--evaluated", default="dev-en,test-de", help="evaluated parts to write, e.g. dev-en,test-de")
    parser.add_argument("--write-only", action="store_true", help="write the store (kept) and stop")
    parser.add_argument("--train-heads", action="store_true",
                        help="also run xfuse's train_heads for one epoch per head (writes dev/test of en and de)")
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)  # internal: one head in this process
    parser.add_argument("--run-train-heads", default=None, help=argparse.SUPPRESS)  # internal: likewise
    args = parser.parse_args(argv)
    store_dir = Path(args.out)
    if args.run:
        print(json.dumps(run_one(store_dir, args.run, RUNS[args.run], args.steps, args.batch_size, args.memory_mb)))
        return 0
    if args.run_train_heads:
        print(json.dumps(run_train_heads(store_dir, args.run_train_heads, RUNS[args.run_train_heads], args.memory_mb,
                                         store_dir.parent / f"{store_dir.name}-results")))
        return 0
    if args.train_heads:
        args.evaluated = ",".join(dict.fromkeys(args.evaluated.split(",") + ["dev-en", "test-en", "dev-de", "test-de"]))
    parts = parts_of(args.train_pairs, args.eval_pairs, args.evaluated)
    try:
        if (store_dir / "store.json").is_file() and len(FeatureStore(store_dir).part_paths()) == len(parts):
            print(f"reusing {store_dir}")
        else:
            shutil.rmtree(store_dir, ignore_errors=True)
            started = time.perf_counter()
            size = write_store(store_dir, parts)
            print(f"wrote {store_dir}: {size / 2**30:.1f} GiB in {time.perf_counter() - started:.0f} s", flush=True)
        if args.write_only:
            return 0
        print("| head | layers | steps x batch | train pairs/s | predict pairs/s (test-de) | peak RSS GiB | "
              "previous loader would hold GiB | under 4 GB |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        missed = []
        for head, layers in RUNS.items():
            child = subprocess.run([sys.executable, __file__, "--out", str(store_dir), "--run", head, "--steps",
                                    str(args.steps), "--batch-size", str(args.batch_size), "--memory-mb",
                                    str(args.memory_mb)], capture_output=True, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            ok = result["peak_rss_gib"] * 2**30 < 4e9
            if not ok:
                missed.append(head)
            print(f"| {head} | {layers} | {args.steps} x {args.batch_size} | {result['train_pairs_per_s']:.0f} | "
                  f"{result['predict_pairs_per_s']:.0f} | {result['peak_rss_gib']:.2f} | "
                  f"{previous_loader_gib(store_dir, layers):.1f} | {ok} |", flush=True)
        if args.train_heads:
            print("\n| head | layers | train_heads, one epoch: seconds (training, evaluation) | peak RSS GiB | "
                  "under 4 GB |")
            print("|---|---|---|---:|---|")
            for head, layers in RUNS.items():
                child = subprocess.run([sys.executable, __file__, "--out", str(store_dir), "--run-train-heads", head,
                                        "--memory-mb", str(args.memory_mb)], capture_output=True, text=True, check=True)
                result = json.loads(child.stdout.strip().splitlines()[-1])
                ok = result["peak_rss_gib"] * 2**30 < 4e9
                if not ok:
                    missed.append(f"{head} (train_heads)")
                print(f"| {head} | {layers} | {result['seconds']:.0f} ({result['training_s']:.0f}, "
                      f"{result['evaluation_s']:.0f}) | {result['peak_rss_gib']:.2f} | {ok} |", flush=True)
        print("target met" if not missed else f"target missed for: {', '.join(missed)}")
        return 1 if missed else 0
    finally:
        shutil.rmtree(store_dir.parent / f"{store_dir.name}-results", ignore_errors=True)
        if not args.keep and not args.run and not args.write_only:
            shutil.rmtree(store_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
