"""SLURM: pure functions render a sweep's sbatch scripts from ``jobs/``; thin ones submit them.

Two scripts per submission, both rendered from the templates in ``jobs/``
(``string.Template`` placeholders) by pure functions of the plan and the
cluster options:

- ``extract.sbatch``: ``xfuse extract`` of the sweep's features store (a
  no-op when the store is complete; omitted then);
- ``array.sbatch``: one array task per missing train-heads run,
  ``xfuse run-task --plan P --index $SLURM_ARRAY_TASK_ID``, started only
  after the extraction succeeded (``--dependency=afterok:<id>``) and at most
  ``throttle`` at a time (``--array=...%K``).

Only the tasks that are not done are put in the array, so submitting again
after a cancelled or failed array runs exactly the missing ones.

Usage::

    options = ClusterOptions(partition="gpu", time="00:30:00", gpus=1, throttle=20)
    script = render_array_script(plan, Path("sweeps/e5/plan.json"), options, indices=[0, 1, 2, 5])
    job_ids = submit_slurm(Path("sweeps/e5/plan.json"), options)
"""

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Callable, Optional, Sequence

from xfuse.errors import XfuseError
from xfuse.features.store import atomic_write_text
from xfuse.sweep.plan import load_plan, sweep_paths, sweep_status, to_run

JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"  # the repository's jobs/, beside xfuse/


@dataclass(frozen=True)
class ClusterOptions:
    """What the cluster needs to know; ``None`` leaves a setting to the cluster's defaults."""

    partition: Optional[str] = None
    account: Optional[str] = None
    time: str = "01:00:00"
    extract_time: str = "06:00:00"
    mem: str = "16G"
    cpus: int = 4
    gpus: int = 0  # GPUs of the extraction job and of each array task (heads train on one when given)
    throttle: int = 0  # at most this many array tasks at once; 0 for no limit
    job_name: str = "xfuse"
    setup: str = ""  # shell lines run first in each job (module load ..., source venv/bin/activate)
    python: str = sys.executable

    def validate(self) -> None:
        for option, value in (("--cpus", self.cpus), ("--gpus", self.gpus), ("--throttle", self.throttle)):
            if not isinstance(value, int) or value < (1 if option == "--cpus" else 0):
                raise XfuseError(f"{option}: expected an integer >= {1 if option == '--cpus' else 0}, got {value!r}")


def array_ranges(indices: Sequence[int]) -> str:
    """Compact SLURM ``--array`` ranges of task indices: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``."""
    values = sorted(set(int(index) for index in indices))
    if not values:
        raise XfuseError("no task indices to put in an array")
    ranges, start = [], values[0]
    for previous, current in zip(values, values[1:] + [None]):
        if current != previous + 1:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ",".join(ranges)


def _optional_lines(options: ClusterOptions) -> str:
    lines = []
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.account:
        lines.append(f"#SBATCH --account={options.account}")
    if options.gpus:
        lines.append(f"#SBATCH --gres=gpu:{options.gpus}")
    return "".join("\n" + line for line in lines)


def _render(template: str, options: ClusterOptions, log_dir: Path, **values) -> str:
    options.validate()
    path = JOBS_DIR / template
    if not path.is_file():
        raise XfuseError(f"sbatch template {path} is missing; run xfuse from its repository checkout (pip install -e .)")
    return Template(path.read_text()).substitute(
        job_name=options.job_name, log_dir=shlex.quote(str(log_dir)), time=options.time,
        extract_time=options.extract_time, mem=options.mem, cpus=options.cpus,
        optional_lines=_optional_lines(options), setup=options.setup.strip(), python=shlex.quote(options.python),
        **values,
    )


def extract_arguments(extract: dict) -> list:
    """The ``xfuse extract`` options that reproduce a plan's resolved extraction settings."""
    arguments = ["--split", "all", "--langs", ",".join(extract["languages"]), "--encoder", extract["encoder"],
                 "--max-length", str(extract["max_length"]), "--layers", str(extract["layers"]),
                 "--dtype", extract["dtype"], "--batch-size", str(extract["batch_size"]),
                 "--shard-size", str(extract["shard_size"]), "--device", extract["device"],
                 "--cache-dir", extract["cache_dir"], "--out", extract["out"]]
    if extract["data_dir"]:
        arguments += ["--data-dir", extract["data_dir"]]
    if extract["prefix"] is not None:
        arguments += ["--prefix", extract["prefix"]]
    return arguments


def render_extract_script(plan: dict, plan_path: Path, options: ClusterOptions) -> str:
    """The sbatch script that extracts the plan's features store."""
    log_dir = sweep_paths(plan_path)["logs"]
    return _render("extract.sbatch", options, log_dir,
                   extract_options=" ".join(shlex.quote(argument) for argument in extract_arguments(plan["extract"])))


def render_array_script(plan: dict, plan_path: Path, options: ClusterOptions, indices: Sequence[int]) -> str:
    """The sbatch array script running tasks ``indices`` of the plan."""
    for index in indices:
        if not 0 <= index < len(plan["tasks"]):
            raise XfuseError(f"task index {index} is outside the plan's 0..{len(plan['tasks']) - 1}")
    array = array_ranges(indices) + (f"%{options.throttle}" if options.throttle else "")
    return _render("array.sbatch", options, sweep_paths(plan_path)["logs"], array=array,
                   plan=shlex.quote(str(Path(plan_path).resolve())))


def store_is_complete(plan: dict) -> bool:
    """Whether the plan's features store holds a complete part for every file of the protocol."""
    from xfuse.features.data import protocol_parts
    from xfuse.features.store import FeatureStore

    store = Path(plan["store"])
    if not (store / "store.json").is_file():
        return False
    have = {tuple(path.name.split("-")[:2]) for path in FeatureStore(store).part_paths()}
    return all(part in have for part in protocol_parts("all", plan["extract"]["languages"]))


def sbatch(script: Path, dependency: Optional[str] = None, run: Callable = subprocess.run) -> str:
    """Submit ``script`` with ``sbatch --parsable``; returns the job id."""
    command = ["sbatch", "--parsable"] + ([f"--dependency=afterok:{dependency}"] if dependency else []) + [str(script)]
    try:
        done = run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise XfuseError("sbatch not found: --executor slurm needs a SLURM client on PATH (or use --executor local)") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise XfuseError(f"sbatch {script} failed: {message[-1] if message else f'exit code {done.returncode}'}")
    return done.stdout.strip().split(";")[0]


def submit_slurm(plan_path: Path, options: ClusterOptions, log: Callable[[str], None] = print,
                 run: Callable = subprocess.run) -> dict:
    """Render and submit the extraction (if needed) and an array of the missing tasks; returns the job ids."""
    plan = load_plan(plan_path)
    paths = sweep_paths(plan_path)
    status = sweep_status(plan_path)
    todo = to_run(status)
    if not todo:
        log(f"all {len(plan['tasks'])} tasks are done; nothing to submit")
        return {}
    paths["jobs"].mkdir(parents=True, exist_ok=True)
    paths["logs"].mkdir(parents=True, exist_ok=True)
    jobs = {}
    if not store_is_complete(plan):
        script = paths["jobs"] / "extract.sbatch"
        atomic_write_text(script, render_extract_script(plan, plan_path, options))
        jobs["extract"] = sbatch(script, run=run)
        log(f"submitted extraction job {jobs['extract']} ({script})")
    script = paths["jobs"] / "array.sbatch"
    atomic_write_text(script, render_array_script(plan, plan_path, options, todo))
    jobs["array"] = sbatch(script, dependency=jobs.get("extract"), run=run)
    log(f"submitted array job {jobs['array']}: {len(todo)} of {len(plan['tasks'])} tasks ({script})")
    return jobs
