"""The zoo's tokenizers as a Hugging Face ``tokenizers`` file (``tokenizer.json``).

The BPE tokenizer already is a ``tokenizers`` model: its JSON is written as it is. The
byte tokenizer is written as a byte-level BPE with no merges: each UTF-8 byte ``b`` is the
vocabulary entry with id ``b`` (spelled with the byte-level alphabet, in which every byte
is one printable character), then ``<pad>`` 256, ``<bos>`` 257, ``<eos>`` 258 as special
tokens. With no merges every byte stays one token, so ``tokenizers`` gives the ids the
zoo's ``ByteTokenizer`` gives, except on text that spells a special token (``"<eos>"``):
``tokenizers`` matches added tokens in raw text, the zoo encodes their bytes.
Writing needs no extra package; reading a BPE file back needs ``tokenizers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.data.tokenizer import SPECIALS, ByteTokenizer, Tokenizer, tokenizer_from_json
from zoo.errors import ZooError


def byte_alphabet() -> list[str]:
    """One printable character per byte 0..255 (the byte-level pre-tokenizer's alphabet).

    Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) take
    the code points from 256 upward, in byte order.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _special(token_id: int, content: str) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _byte_level() -> dict[str, Any]:
    # use_regex=False: no GPT-2 word split; with no merges it would not change the ids anyway.
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def byte_tokenizer_json() -> dict[str, Any]:
    vocab = {char: byte for byte, char in enumerate(byte_alphabet())}
    tok = ByteTokenizer()
    ids = (tok.pad_id, tok.bos_id, tok.eos_id)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_special(i, s) for i, s in zip(ids, SPECIALS, strict=True)],
        "normalizer": None,
        "pre_tokenizer": _byte_level(),
        "post_processor": None,
        "decoder": _byte_level(),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def hf_tokenizer_text(tokenizer: Tokenizer) -> str:
    """The ``tokenizer.json`` text of a zoo tokenizer."""
    if tokenizer.kind == "byte":
        return json.dumps(byte_tokenizer_json(), ensure_ascii=False, indent=1)
    if tokenizer.kind == "bpe":
        return tokenizer.to_json()["tokenizer"]
    raise ZooError(f"cannot write tokenizer kind {tokenizer.kind!r} as tokenizer.json; known kinds: byte, bpe")


def hf_tokenizer_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """``tokenizer_config.json``: lets ``transformers.AutoTokenizer`` wrap ``tokenizer.json``."""
    pad, bos, eos = SPECIALS
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": pad,
        "bos_token": bos,
        "eos_token": eos,
        "model_max_length": 1_000_000_000,
        "zoo_tokenizer_kind": tokenizer.kind,
    }


def read_hf_tokenizer(path: str | Path, kind: str) -> Tokenizer:
    """The zoo tokenizer of kind ``kind`` stored as ``path`` (a tokenizer.json)."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return tokenizer_from_json({"kind": "bpe", "tokenizer": Path(path).read_text(encoding="utf-8")})
    raise ZooError(f"unknown tokenizer kind {kind!r} in {path}; known kinds: byte, bpe")
