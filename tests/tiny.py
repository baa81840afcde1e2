"""Tiny models and data for tests and the Slurm end-to-end check: built from a config, no network.

Usage::

    folder = build_tiny_encoder(Path("/tmp/tiny"), Path("../shared/pawsx"))
    data = write_subset(Path("../shared/pawsx"), Path("/tmp/data"), {"en/train.tsv": 48, "en/dev_2k.tsv": 24})
"""

from pathlib import Path


def write_subset(source: Path, target: Path, rows: dict) -> Path:
    """Copy the header and the first ``rows[name]`` data rows of PAWS-X files (``lang/file.tsv``)."""
    for name, count in rows.items():
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("".join(lines[: count + 1]), encoding="utf-8")
    return target


def build_tiny_encoder(folder: Path, pawsx_dir: Path, hidden_size: int = 32, num_layers: int = 2) -> Path:
    """A randomly initialised BERT with token types and a WordPiece tokenizer trained on some PAWS-X dev text."""
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
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials,
                                                                 show_progress=False))
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]",
                                        sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=128)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=backend.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=128,
                        type_vocab_size=2)
    Path(folder).mkdir(parents=True, exist_ok=True)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
