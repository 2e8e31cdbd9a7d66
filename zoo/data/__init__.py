"""Data for training: tokenizers, corpora, synthetic recall tasks and deterministic batches."""

from zoo.data.corpora import Corpus, builtin_documents, load_corpus, split_text
from zoo.data.synthetic import IGNORE, mqar_batch, selective_copy_batch
from zoo.data.tasks import (
    Batch,
    SyntheticTask,
    Task,
    TextTask,
    make_task,
    seeded_generator,
    text_task,
)
from zoo.data.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    make_tokenizer,
    tokenizer_from_json,
)

__all__ = [
    "IGNORE",
    "BPETokenizer",
    "Batch",
    "ByteTokenizer",
    "Corpus",
    "SyntheticTask",
    "Task",
    "TextTask",
    "Tokenizer",
    "builtin_documents",
    "load_corpus",
    "make_task",
    "make_tokenizer",
    "mqar_batch",
    "seeded_generator",
    "selective_copy_batch",
    "split_text",
    "text_task",
    "tokenizer_from_json",
]
