"""Shared fixtures: the real data in ../shared, a tiny encoder built from a config, small data copies.

Tests that use ../shared fail, never skip, when it is missing: CI has it.
"""

import os
from pathlib import Path

import pytest

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


def write_subset(source: Path, target: Path, rows: dict) -> Path:
    """Copy the header and the first ``rows[name]`` data rows of PAWS-X files (``lang/file.tsv``)."""
    for name, count in rows.items():
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("".join(lines[: count + 1]), encoding="utf-8")
    return target


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
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts = []
    for lang in ("en", "de", "ja"):
        for line in (pawsx_dir / lang / "dev_2k.tsv").read_text(encoding="utf-8").splitlines()[1:300]:
            texts.extend(line.split("\t")[1:3])
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials))
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]",
                                        sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=128)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=backend.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    folder = tmp_path_factory.mktemp("tiny_encoder")
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
