"""Shared fixtures: the real data in ../shared, a tiny encoder built from a config, small data copies.

Tests that use ../shared fail, never skip, when it is missing: CI has it.
"""

import os
from pathlib import Path

import pytest

from tiny import build_tiny_encoder, write_subset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XFUSE_SHARED_DIR", REPO.parent / "shared"))
PAWSX = SHARED / "pawsx"
ORACLES = SHARED / "oracles"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: these tests need ../shared beside the repository (or $XFUSE_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def pawsx_dir() -> Path:
    return _require(PAWSX)


@pytest.fixture(scope="session")
def oracles_dir() -> Path:
    return _require(ORACLES)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache root for the session, so the embedded encoder is built once."""
    return Path(os.environ.get("XFUSE_TEST_CACHE") or tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def mini_pawsx(pawsx_dir, tmp_path_factory) -> Path:
    """A small PAWS-X copy: 48 training pairs, 24 dev and test pairs in en, de and ja."""
    rows = {"en/train.tsv": 48}
    for lang in ("en", "de", "ja"):
        rows[f"{lang}/dev_2k.tsv"] = 24
        rows[f"{lang}/test_2k.tsv"] = 24
    return write_subset(pawsx_dir, tmp_path_factory.mktemp("mini_pawsx"), rows)


@pytest.fixture(scope="session")
def tiny_encoder(pawsx_dir, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with token types and a WordPiece tokenizer, saved to a folder."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), pawsx_dir)
