"""Text corpora with a deterministic train/validation split.

``builtin`` needs nothing but the Python install: the English help text of
``pydoc_data.topics`` plus the source of a fixed list of standard-library modules.
``builtin:topics`` and ``builtin:stdlib`` select one half. ``builtin:pylib`` is larger (about
11 MB): every ``*.py`` file of the running Python's standard library except its tests,
IDLE and installed packages; it changes with the Python version, so a comparison trains
every model on one machine. Anything else is a text file, a directory (every
``*.txt``/``*.md``/``*.py`` file below it) or a glob.

The split cuts the concatenated text into blocks of ``block_chars`` characters and sends
every ``val_every``-th block to validation, so both splits sample the whole corpus and the
split never depends on hash seeds or file-system order (files are sorted).
"""

from __future__ import annotations

import glob as globlib
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError

# Pure-Python stdlib modules present on every CPython 3.10+ install.
STDLIB_MODULES = (
    "argparse",
    "bisect",
    "calendar",
    "colorsys",
    "dataclasses",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "json.decoder",
    "json.encoder",
    "shlex",
    "statistics",
    "string",
    "textwrap",
)
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py")
# Folders of the standard library that builtin:pylib leaves out: test suites (and their data
# files written in other encodings on purpose), IDLE, and whatever pip installed.
PYLIB_SKIP = frozenset({"test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages", "__pycache__"})
BUILTIN_PARTS = ("all", "topics", "stdlib", "pylib")


@dataclass(frozen=True)
class Corpus:
    name: str
    train: str
    validation: str

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "train_chars": len(self.train),
            "val_chars": len(self.validation),
        }


def pylib_files() -> list[Path]:
    """Every ``*.py`` file of this Python's standard library outside ``PYLIB_SKIP``, sorted by path."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not PYLIB_SKIP.intersection(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def builtin_documents(part: str = "all") -> list[str]:
    if part not in BUILTIN_PARTS:
        raise ZooError(
            f"unknown built-in corpus part {part!r}; use builtin, builtin:topics, builtin:stdlib or builtin:pylib"
        )
    if part == "pylib":
        return [file.read_text(encoding="utf-8", errors="replace") for file in pylib_files()]
    docs: list[str] = []
    if part in ("all", "topics"):
        from pydoc_data.topics import topics

        docs += [topics[key] for key in sorted(topics)]
    if part in ("all", "stdlib"):
        docs += [inspect.getsource(importlib.import_module(name)) for name in STDLIB_MODULES]
    return docs


def resolve_files(source: str | Path) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    else:
        files = sorted(Path(p) for p in globlib.glob(str(source), recursive=True) if Path(p).is_file())
    if not files:
        raise ZooError(f"no text files found for --data {str(source)!r} (a file, a directory or a glob)")
    return files


def split_text(text: str, *, val_every: int = 20, block_chars: int = 4096) -> tuple[str, str]:
    """Every ``val_every``-th block of ``block_chars`` characters goes to validation."""
    if val_every < 2:
        raise ValueError(f"val_every must be >= 2, got {val_every}")
    blocks = [text[i : i + block_chars] for i in range(0, len(text), block_chars)]
    if len(blocks) < 2:
        half = len(text) * (val_every - 1) // val_every
        return text[:half], text[half:]
    train = [b for i, b in enumerate(blocks) if i % val_every != val_every - 1]
    val = [b for i, b in enumerate(blocks) if i % val_every == val_every - 1]
    if not val:
        val, train = train[-1:], train[:-1]
    return "".join(train), "".join(val)


def load_corpus(source: str | Path | None = None, *, val_every: int = 20, separator: str = "\n\n") -> Corpus:
    """``None``/``"builtin"``, ``"builtin:topics"``, ``"builtin:stdlib"``, ``"builtin:pylib"``, a file, a
    directory or a glob."""
    name = "builtin" if source is None else str(source)
    if name == "builtin" or name.startswith("builtin:"):
        docs = builtin_documents(name.partition(":")[2] or "all")
    else:
        docs = []
        for file in resolve_files(name):
            try:
                docs.append(file.read_text(encoding="utf-8", errors="replace"))
            except OSError as exc:
                raise ZooError(f"cannot read corpus file {file}: {exc}") from exc
    text = separator.join(docs)
    if len(text) < 64:
        raise ZooError(f"corpus {name!r} is too small ({len(text)} characters)")
    train, validation = split_text(text, val_every=val_every)
    return Corpus(name, train, validation)
