"""save_pretrained / zoo.from_pretrained, the HF tokenizer.json, and zoo.load's eval mode."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.checkpoint import save_checkpoint
from zoo.data.hf_tokenizer import byte_tokenizer_json
from zoo.data.tokenizer import ByteTokenizer

TEXTS = ["hello world", " a\n\tb  ", "héllo ✓ 日本 🙂", "\x00\x7f\x80", ""]
SPEC = {
    "vocab_size": 300,
    "d_model": 32,
    "layers": [
        {"mixer": {"name": "mamba2", "params": {"d_state": 8, "headdim": 16}}, "mlp": {"kind": "none"}},
        {"mixer": {"name": "attention", "params": {"n_heads": 2}}},
    ],
}


def _model(**overrides):
    return zoo.build({**SPEC, **overrides})


def test_round_trip_logits_eval_mode_and_files(tmp_path) -> None:
    model = _model()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "zoo" and config["architectures"] == ["CausalLM"]
    assert config["tokenizer_kind"] == "byte" and config["zoo_version"] == zoo.__version__
    assert config["vocab_size"] == 300 and config["torch_dtype"] == "float32"
    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert "embedding.weight" in stored and "lm_head.weight" not in stored  # tied: stored once
    loaded, tokenizer = zoo.from_pretrained(tmp_path / "m")
    assert not loaded.training and isinstance(tokenizer, ByteTokenizer)
    assert loaded.lm_head.weight.data_ptr() == loaded.embedding.weight.data_ptr()
    ids = torch.randint(0, 300, (2, 11))
    torch.testing.assert_close(loaded(ids), model.eval()(ids), rtol=0, atol=0)


def test_untied_weights_round_trip(tmp_path) -> None:
    model = _model(tie_embeddings=False).eval()
    model.save_pretrained(tmp_path / "m")
    assert "lm_head.weight" in load_file(str(tmp_path / "m" / "model.safetensors"))
    loaded, _ = zoo.from_pretrained(tmp_path / "m")
    ids = torch.randint(0, 300, (1, 7))
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_refuses_non_empty_directory_unless_overwrite(tmp_path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(zoo.ZooError, match="overwrite=True"):
        _model().save_pretrained(target)
    assert (target / "notes.txt").read_text() == "keep me"
    _model().save_pretrained(target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or old copy left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    _model().save_pretrained(empty)  # an empty directory is not an overwrite


def test_small_vocab_writes_no_tokenizer_and_refuses_a_larger_one(tmp_path) -> None:
    small = _model(vocab_size=64)
    small.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "tokenizer.json").exists()
    assert zoo.from_pretrained(tmp_path / "m")[1] is None
    with pytest.raises(zoo.ZooError, match="vocab_size is 64"):
        small.save_pretrained(tmp_path / "n", tokenizer=ByteTokenizer())


def test_never_loads_pickle(tmp_path) -> None:
    _model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save({}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(zoo.ZooError, match="never loads pickled"):
        zoo.from_pretrained(tmp_path / "m")


def test_rejects_foreign_config(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(zoo.ZooError, match="model_type is 'llama'"):
        zoo.from_pretrained(tmp_path)


def test_byte_tokenizer_json_matches_the_zoo_byte_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers", reason="the 'tokenizers' package (bpe extra) is not installed")
    hf = tokenizers.Tokenizer.from_str(json.dumps(byte_tokenizer_json()))
    ours = ByteTokenizer()
    assert hf.get_vocab_size() == ours.vocab_size
    assert [hf.token_to_id(s) for s in ("<pad>", "<bos>", "<eos>")] == [ours.pad_id, ours.bos_id, ours.eos_id]
    for text in TEXTS:
        ids = hf.encode(text).ids
        assert ids == ours.encode(text)
        assert hf.decode(ids) == text == ours.decode(ids)
    assert hf.decode([104, ours.eos_id, 105]) == "hi"  # specials are skipped in decoding, as the zoo does


def test_bpe_tokenizer_file_round_trip(tmp_path) -> None:
    tokenizers = pytest.importorskip("tokenizers", reason="the 'tokenizers' package (bpe extra) is not installed")
    from zoo.data.tokenizer import BPETokenizer

    bpe = BPETokenizer.train(["the cat sat on the mat"] * 20, vocab_size=300)
    model = _model(vocab_size=bpe.vocab_size)
    model.save_pretrained(tmp_path / "m", tokenizer=bpe)
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "m" / "tokenizer.json"))
    _, loaded = zoo.from_pretrained(tmp_path / "m")
    for text in ("the cat", "a mat sat"):
        assert hf.encode(text).ids == bpe.encode(text) == loaded.encode(text)


def test_zoo_load_returns_eval_mode(tmp_path) -> None:
    path = save_checkpoint(tmp_path, 1, model=_model())
    assert not zoo.load(path).training
