"""Benchmark of ``xfuse report``: the code before the report cache against this checkout, on the same results.

Three runs of ``xfuse report --workers W`` on one sweep's results, each timed
from the outside (a fresh process, as a user runs it) with its peak memory
(the resident memory of the process and its workers together, sampled):

1. the previous code (a git worktree of ``--before``, the commit before the cache);
2. this checkout from an empty cache;
3. this checkout again, nothing changed (every entry read from the cache).

It then checks that ``results.csv`` and ``comparisons.csv`` of 2 and 3 equal
those of 1, byte for byte, and prints the times, their ratios and the largest
difference in any numeric cell if they are not identical. The results are read
where they are (they are never modified); each run writes its report and cache
under ``--out``.

With ``--previous-study`` (default when no ``--plan`` is given), the sweep is
the previous 186-run study as committed at e660fc5, copied out of git into
``--out``; its results, made before manifests, are sealed first (``xfuse sweep
seal``, untimed). Usage::

    python benchmarks/report_cache.py [--plan docs/results/pawsx-e5/plan.json | --previous-study] [--workers 2]
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREVIOUS_STUDY = "e660fc5"


def previous_study(out: Path) -> Path:
    """The 186-run study of ``PREVIOUS_STUDY`` (plan and results), copied out of git; its plan.json path."""
    folder = out / f"study-{PREVIOUS_STUDY}"
    if not (folder / "docs/results/pawsx-e5/plan.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", PREVIOUS_STUDY, "docs/results/pawsx-e5"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "docs/results/pawsx-e5/plan.json"


def worktree(commit: str, out: Path) -> Path:
    path = out / f"worktree-{commit}"
    if not path.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO, check=True,
                       capture_output=True)
    return path


def _tree_rss_kib(root: int) -> int:
    """Resident memory of a process and all its descendants now (KiB), from /proc."""
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines()
                                        if line.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(pid, 0) for pid in tree)


def timed_report(checkout: Path, plan: Path, report: Path, workers: int, extra: list) -> tuple:
    """(wall seconds, peak resident MiB of the report and its workers together, sampled every 0.5 s)."""
    env = os.environ | {"PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "xfuse", "report", "--plan", str(plan), "--out", str(report),
               "--workers", str(workers), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss_kib(process.pid))
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    _, error = process.communicate()
    if process.returncode:
        raise SystemExit(f"report failed ({checkout}):\n{error[-2000:]}")
    return seconds, peak / 1024


def largest_difference(first: Path, second: Path) -> float:
    """The largest absolute difference between numeric cells of two CSVs of the same shape (inf if not)."""
    rows_a, rows_b = list(csv.reader(first.open())), list(csv.reader(second.open()))
    if len(rows_a) != len(rows_b) or rows_a[0] != rows_b[0]:
        return float("inf")
    largest = 0.0
    for row_a, row_b in zip(rows_a[1:], rows_b[1:]):
        for a, b in zip(row_a, row_b):
            if a == b:
                continue
            try:
                largest = max(largest, abs(float(a) - float(b)))
            except ValueError:
                return float("inf")
    return largest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", default=None, help="plan.json of a finished sweep [default: the previous study]")
    parser.add_argument("--previous-study", action="store_true", help=f"the 186-run study of {PREVIOUS_STUDY}")
    parser.add_argument("--before", default="5a16283", help="commit of the report before the cache")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "report"))
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = previous_study(out) if args.previous_study or not args.plan else Path(args.plan).resolve()
    tasks = len(json.loads(plan.read_text())["tasks"])
    # results made before manifests get theirs once, as a user would (xfuse sweep seal), untimed
    subprocess.run([sys.executable, "-m", "xfuse", "sweep", "seal", "--plan", str(plan)], cwd=REPO, check=True,
                   env=os.environ | {"PYTHONPATH": str(REPO)})
    cache = out / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    runs = {}
    runs["previous"] = timed_report(worktree(args.before, out), plan, out / "previous", args.workers, [])
    print(f"previous code ({args.before}): {runs['previous'][0]:.1f} s, peak {runs['previous'][1]:.0f} MiB", flush=True)
    runs["empty cache"] = timed_report(REPO, plan, out / "empty", args.workers, ["--cache", str(cache)])
    print(f"this checkout, empty cache: {runs['empty cache'][0]:.1f} s, peak {runs['empty cache'][1]:.0f} MiB", flush=True)
    runs["second call"] = timed_report(REPO, plan, out / "second", args.workers, ["--cache", str(cache)])
    print(f"this checkout, second call: {runs['second call'][0]:.1f} s, peak {runs['second call'][1]:.0f} MiB", flush=True)
    print(f"\n{tasks} tasks of {plan}, --workers {args.workers}")
    print(f"{'run':<14} {'seconds':>9} {'of previous':>12} {'peak MiB':>9}")
    for name, (seconds, peak) in runs.items():
        print(f"{name:<14} {seconds:>9.1f} {seconds / runs['previous'][0]:>12.3f} {peak:>9.0f}")
    identical = True
    for name in ("results.csv", "comparisons.csv"):
        for run in ("empty", "second"):
            same = (out / "previous" / name).read_bytes() == (out / run / name).read_bytes()
            identical &= same
            detail = "" if same else f" (largest numeric difference {largest_difference(out / 'previous' / name, out / run / name):.3g})"
            print(f"{name} of '{run}' equals the previous code's: {same}{detail}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
