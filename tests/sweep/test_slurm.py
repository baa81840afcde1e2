"""SLURM scripts rendered from jobs/ (golden files) and submission through a stand-in sbatch."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from xfuse.errors import XfuseError
from xfuse.sweep.slurm import ClusterOptions, array_ranges, render_array_script, render_extract_script, submit_slurm

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PLAN_PATH = Path("/scratch/sweeps/e5/plan.json")
PLAN = {
    "store": "/scratch/sweeps/e5/features",
    "extract": {"encoder": "bert-base-multilingual-cased", "languages": ["en", "de", "es", "fr", "ja", "ko", "zh"],
                "max_length": 128, "layers": "all", "dtype": "float16", "batch_size": 32, "shard_size": 256,
                "device": "auto", "cache_dir": "/scratch/cache", "out": "/scratch/sweeps/e5/features",
                "data_dir": "/data/x-final", "prefix": None},
    "tasks": [{"index": i} for i in range(62)],
}
OPTIONS = ClusterOptions(partition="gpu", account="nlp-lab", time="00:30:00", mem="24G", cpus=8, gpus=1, throttle=16,
                         setup="source /opt/xfuse/venv/bin/activate", python="python3")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("XFUSE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (XFUSE_UPDATE_GOLDEN=1 rewrites it)"


def test_array_script_matches_its_golden_file():
    check_golden("array.sbatch", render_array_script(PLAN, PLAN_PATH, OPTIONS, indices=[0, 1, 2, 3, 7, 9, 10, 61]))


def test_extract_script_matches_its_golden_file():
    check_golden("extract.sbatch", render_extract_script(PLAN, PLAN_PATH, OPTIONS))


def test_cluster_defaults_leave_out_partition_account_and_gres():
    script = render_array_script(PLAN, PLAN_PATH, ClusterOptions(python="python3"), indices=[4])
    assert "#SBATCH --array=4\n" in script
    assert "--partition" not in script and "--account" not in script and "--gres" not in script


def test_array_ranges():
    assert array_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert array_ranges([9, 3, 3, 4]) == "3-4,9"
    assert array_ranges([0]) == "0"
    with pytest.raises(XfuseError, match="no task indices"):
        array_ranges([])


def test_bad_options_and_indices_are_refused():
    with pytest.raises(XfuseError, match=r"--cpus: expected an integer >= 1, got 0"):
        render_array_script(PLAN, PLAN_PATH, ClusterOptions(cpus=0), indices=[0])
    with pytest.raises(XfuseError, match=r"task index 62 is outside the plan's 0..61"):
        render_array_script(PLAN, PLAN_PATH, OPTIONS, indices=[61, 62])


class FakeSbatch:
    """Records sbatch calls and answers with consecutive job ids."""

    def __init__(self, fail: str = ""):
        self.calls, self.fail = [], fail

    def __call__(self, command, capture_output, text):
        self.calls.append(command)
        if self.fail:
            return subprocess.CompletedProcess(command, 1, "", f"sbatch: error: {self.fail}\n")
        return subprocess.CompletedProcess(command, 0, f"{100 + len(self.calls)};cluster\n", "")


def write_plan(folder: Path, tasks: int = 5) -> Path:
    folder.mkdir(parents=True)
    plan = dict(PLAN, format="xfuse-plan/1", store=str(folder / "features"),
                tasks=[{"index": i, "name": f"single-L{i}-s0", "head": "single", "layers": [i], "seed": 0}
                       for i in range(tasks)])
    (folder / "plan.json").write_text(json.dumps(plan))
    return folder / "plan.json"


def fake_result(folder):
    """A complete result folder as far as the sweep can tell (its files whole, its manifest written)."""
    import numpy as np

    from xfuse.heads.result_files import write_manifest

    folder.mkdir(parents=True)
    for name in ("config.json", "curve.json", "metrics.json"):
        (folder / name).write_text("{}\n")
    np.savez_compressed(folder / "predictions.npz", **{"test-en/logits": np.zeros((2, 2))})
    write_manifest(folder)
    return folder


def test_submit_puts_only_missing_tasks_in_an_array_after_the_extraction(tmp_path):
    plan_path = write_plan(tmp_path / "sweep")
    for done in ("single-L1-s0", "single-L2-s0"):
        fake_result(tmp_path / "sweep" / "results" / done)
    damaged = fake_result(tmp_path / "sweep" / "results" / "single-L3-s0")
    (damaged / "predictions.npz").unlink()  # listed as damaged: in the array again
    fake, lines = FakeSbatch(), []
    jobs = submit_slurm(plan_path, OPTIONS, log=lines.append, run=fake)
    assert jobs == {"extract": "101", "array": "102"}
    assert fake.calls[0] == ["sbatch", "--parsable", str(tmp_path / "sweep" / "jobs" / "extract.sbatch")]
    assert fake.calls[1] == ["sbatch", "--parsable", "--dependency=afterok:101", str(tmp_path / "sweep" / "jobs" / "array.sbatch")]
    assert "#SBATCH --array=0,3-4%16\n" in (tmp_path / "sweep" / "jobs" / "array.sbatch").read_text()
    assert lines[-1].startswith("submitted array job 102: 3 of 5 tasks")


def test_submit_with_everything_done_submits_nothing(tmp_path):
    plan_path = write_plan(tmp_path / "sweep", tasks=1)
    fake_result(tmp_path / "sweep" / "results" / "single-L0-s0")
    fake, lines = FakeSbatch(), []
    assert submit_slurm(plan_path, OPTIONS, log=lines.append, run=fake) == {}
    assert fake.calls == [] and lines == ["all 1 tasks are done; nothing to submit"]


def test_sbatch_errors_are_one_line(tmp_path):
    plan_path = write_plan(tmp_path / "sweep")
    with pytest.raises(XfuseError, match=r"sbatch .*extract.sbatch failed: sbatch: error: invalid partition specified"):
        submit_slurm(plan_path, OPTIONS, log=lambda line: None, run=FakeSbatch(fail="invalid partition specified"))

    def missing(*args, **kwargs):
        raise FileNotFoundError("sbatch")

    with pytest.raises(XfuseError, match=r"sbatch not found: --executor slurm needs a SLURM client on PATH"):
        submit_slurm(plan_path, OPTIONS, log=lambda line: None, run=missing)
