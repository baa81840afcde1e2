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


def write_feature_store(store_dir: Path, parts: dict, num_hidden_layers: int) -> Path:
    """A features store written through xfuse's own writer from arrays, for synthetic tasks.

    ``parts`` maps ``(split, lang)`` to ``(features, lengths, labels)``: ``features`` (layers, tokens, E) holds every
    hidden state ``0..num_hidden_layers`` of the pairs' tokens one after another, ``lengths`` the tokens of each pair
    (the second sentence starts half-way). A fourth element, a dict, may give the part's ``ids``, token
    ``input_ids``, ``second_start`` and ``data_file`` (its sha256 is recorded) instead of the synthetic ones.
    """
    import numpy as np

    from xfuse.features.store import FORMAT, shards_dir, write_part, write_shard, write_store_settings
    from xfuse.features.hashing import config_fingerprint

    layers = list(range(num_hidden_layers + 1))
    hidden = next(iter(parts.values()))[0].shape[2]
    settings = {"format": FORMAT, "encoder": "synthetic", "encoder_revision": "none", "hidden_size": hidden,
                "num_hidden_layers": num_hidden_layers, "layers": layers, "dtype": "float16", "max_length": 128,
                "prefix": ""}
    settings["fingerprint"] = config_fingerprint(settings)
    store_dir.mkdir(parents=True, exist_ok=True)
    write_store_settings(store_dir, settings)
    for (split, lang), (features, lengths, labels, *extra) in parts.items():
        extra = extra[0] if extra else {}
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        target = store_dir / f"{split}-{lang}-{'0' * 12}.h5"
        shards_dir(target).mkdir(parents=True, exist_ok=True)
        shard = shards_dir(target) / "shard-00000.h5"
        write_shard(shard, features.astype(np.float16), layers, {"first": 0, "stop": len(lengths)})
        pairs = {"id": extra.get("ids", [f"{split}-{lang}-{i}" for i in range(len(lengths))]),
                 "label": np.asarray(labels), "offset": offsets,
                 "second_start": np.asarray(extra.get("second_start", np.asarray(lengths) // 2)).astype(np.int32),
                 "input_ids": np.asarray(extra.get("input_ids", np.zeros(offsets[-1])), dtype=np.int32)}
        attrs = {key: value for key, value in settings.items() if key != "fingerprint"}
        attrs.update(settings_fingerprint=settings["fingerprint"], split=split, lang=lang,
                     data_file=str(extra.get("data_file", "synthetic")), dropped_not_translated=0, dropped_empty=0,
                     dropped_unlabelled=0)
        if "data_file" in extra:
            from xfuse.features.hashing import file_sha256

            attrs["data_sha256"] = file_sha256(Path(extra["data_file"]))
        write_part(target, [shard], [int(offsets[-1])], pairs, attrs)
    return store_dir


HEAD_LAYERS = {"single": "2", "dlfa": "1,2", "aif": "1,2", "concat": "1,2", "mean": "1,2", "scalar_mix": "all"}


def outlier_task(seed: int, signal: bool = True) -> dict:
    """Parts of a synthetic task whose layers look like real encoder layers: two channels of each layer carry large
    offsets and scales (mBERT's outlier dimensions) and nothing about the label; the rest carry the pair's signal
    along a per-layer direction, under noise. Without ``signal`` the labels are drawn independently of the features."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width, states = 32, 3
    directions = rng.standard_normal((states, width))
    outliers = [(layer, channel, rng.choice([-20.0, 20.0]))  # each keeps its sign in every part, as mBERT's do
                for layer in range(states) for channel in rng.choice(width, 2, replace=False)]
    for layer, channel, _ in outliers:
        directions[layer, channel] = 0
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    parts = {}
    for part, pairs in ((("train", "en"), 800), (("dev", "en"), 400), (("test", "en"), 200)):
        lengths = rng.integers(6, 13, size=pairs)
        strength = rng.standard_normal(pairs)
        labels = (strength + 0.5 * rng.standard_normal(pairs) > 0) if signal else rng.random(pairs) < 0.45
        per_token = np.repeat(strength, lengths)  # each token of a pair carries its pair's signal
        features = 0.5 * rng.standard_normal((states, len(per_token), width)) + per_token[None, :, None] * directions[:, None]
        for layer, channel, offset in outliers:
            features[layer, :, channel] = offset + 8.0 * rng.standard_normal(len(per_token))
        parts[part] = (features, lengths, labels.astype(np.int64))
    return parts
