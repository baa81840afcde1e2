"""The sweep check under a real Slurm (started by .ci/slurm.sh): submit, wait, check, cancel, resubmit, compare.

1. A sweep of 16 tasks on a tiny encoder built from a config goes through
   ``xfuse sweep submit --executor slurm``: an extraction job, then an array
   job depending on it. Every task must finish, with its result checked.
2. The same sweep in a second folder is cancelled (``scancel``) part-way and
   submitted again: the new array must hold exactly the missing tasks, and
   the final report must equal the first sweep's.

Usage: python .ci/slurm_sweep.py --work DIR   (with SLURM_CONF pointing at a running cluster)
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from tiny import build_tiny_encoder, write_subset  # noqa: E402

SHARED = REPO.parent / "shared"
SUBMIT = ["--executor", "slurm", "--cpus", "1", "--mem", "1500M", "--time", "00:15:00", "--extract-time", "00:15:00"]


def say(message: str) -> None:
    print(f"slurm: {message}", flush=True)


def xfuse(*arguments: str) -> str:
    done = subprocess.run([sys.executable, "-m", "xfuse", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"slurm: FAILED: xfuse {' '.join(arguments)}: {done.stderr.strip()}")
    return done.stdout


def queued(job_ids) -> list:
    lines = subprocess.run(["squeue", "--noheader", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                           text=True).stdout.splitlines()
    return [line for line in lines if line.strip()]


def wait(job_ids, until=None, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until():
            return
        if until is None and not queued(job_ids):
            return
        time.sleep(1)
    raise SystemExit(f"slurm: FAILED: jobs {job_ids} still running after {timeout} s: {queued(job_ids)}")


def submit(plan: Path, *extra: str) -> dict:
    output = xfuse("sweep", "submit", "--plan", str(plan), *SUBMIT, *extra)
    print(output, end="", flush=True)
    return dict(re.findall(r"(extract|array)=(\d+)", output))


def check_results(plan_path: Path) -> list:
    plan = json.loads(plan_path.read_text())
    results = plan_path.parent / "results"
    for task in plan["tasks"]:
        folder = results / task["name"]
        files = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        expected = ["config.json", "curve.json", "manifest.json", "metrics.json", "predictions.npz"]
        config = json.loads((folder / "config.json").read_text())["train"] if "config.json" in files else {}
        if config.get("standardize", "none") != "none":
            expected.append("standardizer.npz")  # the train-en statistics of a standardised run
        if files != expected:
            raise SystemExit(f"slurm: FAILED: task {task['index']} ({task['name']}) has {files or 'no result'}")
        metrics = json.loads((folder / "metrics.json").read_text())
        if (config["head"], config["seed"]) != (task["head"], task["seed"]) or sorted(metrics["languages"]) != ["de", "en", "ja"]:
            raise SystemExit(f"slurm: FAILED: task {task['index']} result does not match its plan entry")
    status = xfuse("sweep", "status", "--plan", str(plan_path)).splitlines()[0]
    if status != f"{len(plan['tasks'])} tasks: {len(plan['tasks'])} done, 0 damaged, 0 failed, 0 missing":
        raise SystemExit(f"slurm: FAILED: {status}")
    return plan["tasks"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    work = parser.parse_args().work.resolve()
    encoder = build_tiny_encoder(work / "tiny_encoder", SHARED / "pawsx")
    rows = {"en/train.tsv": 64}
    for lang in ("en", "de", "ja"):
        rows[f"{lang}/dev_2k.tsv"] = 32
        rows[f"{lang}/test_2k.tsv"] = 32
    data = write_subset(SHARED / "pawsx", work / "data", rows)
    spec = {"extract": {"encoder": str(encoder), "data_dir": str(data), "languages": ["en", "de", "ja"],
                        "max_length": 64, "device": "cpu", "shard_size": 16},
            "grids": [{"heads": ["single"], "layers": "each"}, {"heads": ["dlfa", "aif"], "layers": "lower_with_last"},
                      {"heads": ["scalar_mix"], "layers": "all"}],
            "seeds": [0, 1], "train": {"max_epochs": 2, "n_resamples": 50, "attention_dim": 8, "batch_size": 16}}
    (work / "spec.json").write_text(json.dumps(spec))
    plans = {}
    for name in ("whole", "cancelled"):
        print(xfuse("sweep", "plan", "--spec", str(work / "spec.json"), "--out", str(work / name / "sweep")), end="")
        plans[name] = work / name / "sweep" / "plan.json"

    say("1. an uninterrupted sweep as an sbatch array after an extraction job")
    jobs = submit(plans["whole"], "--throttle", "2")
    if set(jobs) != {"extract", "array"}:
        raise SystemExit(f"slurm: FAILED: expected an extraction and an array job, got {jobs}")
    started = time.monotonic()
    wait(list(jobs.values()))
    tasks = check_results(plans["whole"])
    logs = sorted((plans["whole"].parent / "logs").glob(f"task-{jobs['array']}_*.out"))
    if len(logs) != len(tasks):
        raise SystemExit(f"slurm: FAILED: {len(logs)} array task logs for {len(tasks)} tasks")
    say(f"array job {jobs['array']}: all {len(tasks)} tasks completed under slurmctld and slurmd in "
        f"{time.monotonic() - started:.0f} s, every result checked")

    say("2. the same sweep cancelled part-way, then submitted again")
    results = plans["cancelled"].parent / "results"
    done = lambda: len([p for p in results.glob("*") if not p.name.startswith(".")]) if results.is_dir() else 0
    jobs = submit(plans["cancelled"], "--throttle", "2")
    wait(list(jobs.values()), until=lambda: done() >= 4)
    subprocess.run(["scancel", *jobs.values()], check=True)
    wait(list(jobs.values()))
    status = xfuse("sweep", "status", "--plan", str(plans["cancelled"])).splitlines()[0]
    plan = json.loads(plans["cancelled"].read_text())
    finished = {p.name for p in results.glob("*") if not p.name.startswith(".")}
    missing = [task["index"] for task in plan["tasks"] if task["name"] not in finished]
    say(f"after scancel: {status}")
    if not missing or len(missing) == len(plan["tasks"]):
        raise SystemExit(f"slurm: FAILED: the cancel should leave some tasks done and some missing: {status}")
    again = submit(plans["cancelled"], "--throttle", "2")
    if set(again) != {"array"}:
        raise SystemExit(f"slurm: FAILED: the store is complete, so only an array job was expected, got {again}")
    array_line = next(line for line in (plans["cancelled"].parent / "jobs" / "array.sbatch").read_text().splitlines()
                      if line.startswith("#SBATCH --array="))
    wait([again["array"]])
    ran = sorted(int(path.name.split("_")[1].split(".")[0]) for path in
                 (plans["cancelled"].parent / "logs").glob(f"task-{again['array']}_*.out"))
    if ran != missing:
        raise SystemExit(f"slurm: FAILED: the second array ran tasks {ran}, the missing ones were {missing}")
    check_results(plans["cancelled"])
    say(f"second array {again['array']} ({array_line.split('=')[1]}) ran only the {len(missing)} missing tasks {ran}")

    reports = {}
    for name, plan_path in plans.items():
        xfuse("report", "--plan", str(plan_path), "--bootstrap", "200")
        folder = plan_path.parent / "report"
        # The report ends in a provenance section of measured times, which differ from run to run.
        reports[name] = ((folder / "results.csv").read_text(), (folder / "report.md").read_text().split("\n## Provenance\n")[0])
    if reports["whole"] != reports["cancelled"]:
        raise SystemExit("slurm: FAILED: the report of the resumed sweep differs from the uninterrupted one")
    say("the resumed sweep's report (results.csv, and report.md up to its measured times) equals the uninterrupted sweep's")
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
