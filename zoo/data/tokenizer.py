"""Tokenizers: bytes by default, an optional BPE trained locally with ``tokenizers``.

A tokenizer round-trips through a JSON-able dict (``to_json`` / :func:`tokenizer_from_json`)
so a checkpoint can carry it without pickling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from zoo.errors import ZooError

SPECIALS = ("<pad>", "<bos>", "<eos>")


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class ByteTokenizer:
    """UTF-8 bytes 0..255, then ``<pad>`` 256, ``<bos>`` 257, ``<eos>`` 258 (vocab 259)."""

    kind = "byte"

    def __init__(self) -> None:
        self.pad_id, self.bos_id, self.eos_id = 256, 257, 258
        self.vocab_size = 256 + len(SPECIALS)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=259)"


class BPETokenizer:
    """Byte-level BPE from the ``tokenizers`` package (the ``bpe`` extra), trained locally."""

    kind = "bpe"

    def __init__(self, backend: Any) -> None:
        self._tok = backend
        self.vocab_size = backend.get_vocab_size()
        self.pad_id, self.bos_id, self.eos_id = (backend.token_to_id(s) for s in SPECIALS)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024) -> BPETokenizer:
        tokenizers = _import_tokenizers()
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIALS),
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": self._tok.to_str()}

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def _import_tokenizers() -> Any:
    try:
        import tokenizers
        import tokenizers.decoders
        import tokenizers.models
        import tokenizers.pre_tokenizers
        import tokenizers.trainers
    except ImportError as exc:
        raise ZooError(
            "the BPE tokenizer needs the 'tokenizers' package: pip install 'zoo[bpe]' "
            "(or use the default byte tokenizer)"
        ) from exc
    return tokenizers


def tokenizer_from_json(data: dict[str, Any]) -> Tokenizer:
    kind = data.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        tokenizers = _import_tokenizers()
        return BPETokenizer(tokenizers.Tokenizer.from_str(data["tokenizer"]))
    raise ZooError(f"unknown tokenizer kind {kind!r}; known kinds: byte, bpe")


def make_tokenizer(kind: str, texts: Iterable[str] = (), vocab_size: int = 1024) -> Tokenizer:
    """``"byte"`` or ``"bpe"`` (trained on ``texts``; ``"bpe:4096"`` sets the vocabulary)."""
    name, _, size = kind.partition(":")
    if name == "byte":
        return ByteTokenizer()
    if name == "bpe":
        return BPETokenizer.train(texts, int(size) if size else vocab_size)
    raise ZooError(f"unknown tokenizer {kind!r}; choose 'byte' or 'bpe[:VOCAB]'")
