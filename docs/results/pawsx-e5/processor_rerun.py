"""Rerun some of the study's finished tasks on this machine and compare them with the committed results.

The study's tasks ran on two processors (``xfuse report``'s provenance lists
them); which configuration ran where was not randomized, so whether a
learned-seed count depends on the processor cannot be read from the study
itself. This script retrains named tasks from the same plan, settings and
features into a scratch sweep folder (never into the study's) and prints,
for each, the committed and the rerun value of what the findings rest on:
``learned``, the dev-en loss against the prior, the selected epoch, test
accuracy per language and the largest logit difference.

Run it with the code that made the results (the study README's snapshot)::

    PYTHONPATH=/work/snap python docs/results/pawsx-e5/processor_rerun.py \\
        --plan docs/results/pawsx-e5/plan.json --scratch /tmp/rerun \\
        --out docs/results/pawsx-e5/processor-rerun.json single-L4-s0 single-L5-s4
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def processor(metrics: dict) -> str:
    """The processor a run recorded (name, family/model/stepping where recorded), as the report's provenance."""
    machine = metrics.get("machine") or {}
    cpu = machine.get("cpu") or {}
    details = "/".join(str(cpu[key]) for key in ("family", "model", "stepping") if key in cpu)
    return (machine.get("processor") or "not recorded") + (f" (family/model/stepping {details})" if details else "")


def facts(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    with np.load(folder / "predictions.npz") as arrays:
        logits = {name: arrays[name] for name in arrays.files if name.endswith("logits")}
    return {"processor": processor(metrics),
            "learned": bool(metrics["learned"]["learned"]), "best_epoch": metrics["best_epoch"],
            "loss_minus_prior": metrics["learned"]["loss_minus_prior"],
            "accuracy": {lang: values["uncalibrated"]["accuracy"]["value"] for lang, values in metrics["languages"].items()
                         if "uncalibrated" in values and "accuracy" in values["uncalibrated"]},
            "logits": logits}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--scratch", required=True, type=Path, help="a folder for the rerun sweep (created)")
    parser.add_argument("--out", required=True, type=Path, help="the comparison as JSON (written atomically)")
    parser.add_argument("tasks", nargs="+", help="task names of the plan, such as single-L4-s0")
    args = parser.parse_args(argv)
    from xfuse.sweep import run_task

    plan = json.loads(args.plan.read_text())
    index = {task["name"]: task["index"] for task in plan["tasks"]}
    unknown = [name for name in args.tasks if name not in index]
    if unknown:
        print(f"processor_rerun: {unknown[0]!r} is not a task of {args.plan}", file=sys.stderr)
        return 2
    args.scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.plan, args.scratch / "plan.json")
    committed_results = args.plan.parent / "results"
    compared = []
    for name in args.tasks:
        run_task(args.scratch / "plan.json", index[name], log=lambda line: None, threads=1)
        before, after = facts(committed_results / name), facts(args.scratch / "results" / name)
        shared = sorted(set(before["logits"]) & set(after["logits"]))
        largest = max(float(np.max(np.abs(before["logits"][part] - after["logits"][part]))) for part in shared)
        row = {"task": name, "committed": {k: v for k, v in before.items() if k != "logits"},
               "rerun": {k: v for k, v in after.items() if k != "logits"}, "largest_logit_difference": largest}
        compared.append(row)
        print(f"{name}: learned {before['learned']} -> {after['learned']}; best epoch {before['best_epoch']} -> "
              f"{after['best_epoch']}; loss minus prior {before['loss_minus_prior']:+.5f} -> "
              f"{after['loss_minus_prior']:+.5f}; largest logit difference {largest:.3g} "
              f"({before['processor']} -> {after['processor']})", flush=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(json.dumps(compared, indent=1) + "\n")
    temporary.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
