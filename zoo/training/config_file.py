"""Run config files for ``zoo train --config FILE``: the model, the task and a ``[train]`` table.

A file (TOML; YAML or JSON by suffix) holds::

    model = "transmamba-tiny"      # a preset name or a spec file; or a [model] table (an inline spec)
    out = "runs/tiny"              # run directory
    [backend]                      # optional: slot = backend name, as --backend SLOT=NAME
    ssm = "chunked"
    [task]                         # the data: as the flags --task (name), --data, --tokenizer, ...
    name = "text"
    seq_len = 128
    [train]                        # fields of TrainConfig, by their names
    steps = 300

Every table is checked here, before anything is built: an unknown key is one line naming
the key and its table. ``grad_clip = 0`` turns clipping off, as ``--clip 0`` does (TOML has
no null). Relative paths (``out``, a spec file as ``model``, ``[task] data``) are read from the
working directory, as a flag's are; a spec file or ``data`` missing there but present beside
the file is refused with the path to write. A run records its resolved config (file, flags and defaults, validated) as
``config.json`` in its run directory; ``zoo train --config RUN/config.json`` repeats it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from zoo.errors import ZooError
from zoo.training.config import TrainConfig

TABLES = ("model", "out", "backend", "task", "train")
RESOLVED_NAME = "config.json"


class ConfigFileError(ZooError):
    """A run config file cannot be read or holds a bad key or value."""


class TaskTable(BaseModel):
    """The ``[task]`` table: the data flags of ``zoo train`` (``name`` is ``--task``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["text", "mqar", "copy", "induction", "phonebook"] | None = None  # zoo.data.tasks.TASK_KINDS
    data: str | None = None
    tokenizer: str | None = None
    seq_len: StrictInt | None = Field(None, ge=1)
    vocab: StrictInt | None = Field(None, ge=2)
    num_items: StrictInt | None = Field(None, ge=1)
    train_items: list[Annotated[StrictInt, Field(ge=1)]] | None = Field(None, min_length=1)
    train_seq_lens: list[Annotated[StrictInt, Field(ge=1)]] | None = Field(None, min_length=1)


@dataclass(frozen=True)
class RunFile:
    """A config file's contents; ``task`` and ``train`` hold only the keys the file sets."""

    source: str
    model: str | dict[str, Any] | None = None
    out: str | None = None
    backend: dict[str, str] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - the tomli dependency on 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: invalid TOML: {exc}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{path}: invalid JSON: {exc}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigFileError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    raise ConfigFileError(f"{path}: a run config is a .toml, .yaml, .yml or .json file")


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigFileError(f"{source}: [{key}] must be a table, got {type(value).__name__} {value!r}")
    return value


def _one_line(exc: ValidationError, table: str, values: dict[str, Any], source: str) -> ConfigFileError:
    problems = []
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0]) if error.get("loc") else "?"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r} in [{table}]")
        else:
            problems.append(f"[{table}] {key} = {values.get(key)!r}: {error['msg']}")
    return ConfigFileError(f"{source}: " + "; ".join(problems))


def _known_keys(table: str, model: type[BaseModel]) -> str:
    return f"the keys of [{table}] are {', '.join(model.model_fields)}"


def _check_relative(path: Path, key: str, value: str, *, file: bool = False) -> None:
    """Refuse a relative path the file means from its own directory (it is read from the cwd);
    ``file``: only a file beside it counts (a spec file, not a directory of the same name)."""
    written = Path(value)
    if written.is_absolute() or written.exists() or path.parent == Path("."):
        return
    beside = path.parent / written
    if beside.is_file() if file else beside.exists():
        raise ConfigFileError(
            f"{path}: {key} = {value!r}: relative paths in a config file are read from the working "
            f"directory, which has no {value}; the file's directory has it: write {str(beside)!r}"
        )


def load_run_file(path: str | Path) -> RunFile:
    """Read and check a run config file; every problem is a :class:`ConfigFileError` of one line."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise ConfigFileError(f"--config {source}: is a directory; name a .toml, .yaml or .json file")
    if not path.is_file():
        raise ConfigFileError(f"--config {source}: no such file")
    data = _read(path)
    if not isinstance(data, dict):
        raise ConfigFileError(f"{source}: a run config must be a table of keys, got {type(data).__name__}")
    unknown = [key for key in data if key not in TABLES]
    if unknown:
        raise ConfigFileError(
            f"{source}: unknown key {unknown[0]!r} at the top level; the top-level keys are {', '.join(TABLES)}"
        )
    model = data.get("model")
    if model is not None and not isinstance(model, (str, dict)):
        raise ConfigFileError(f"{source}: model must be a preset name, a spec file or a [model] table, got {model!r}")
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise ConfigFileError(f"{source}: out must be a directory name (a string), got {out!r}")
    backend = _table(data, "backend", source)
    for slot, name in backend.items():
        if not isinstance(name, str):
            raise ConfigFileError(f"{source}: [backend] {slot} = {name!r}: a backend name is a string")

    task_values = _table(data, "task", source)
    try:
        task = TaskTable(**task_values)
    except ValidationError as exc:
        error = _one_line(exc, "task", task_values, source)
        if "unknown key" in str(error):
            error = ConfigFileError(f"{error}; {_known_keys('task', TaskTable)}")
        raise error from None

    train_values = dict(_table(data, "train", source))
    if train_values.get("grad_clip") == 0 and not isinstance(train_values.get("grad_clip"), bool):
        train_values["grad_clip"] = None  # as --clip 0: TOML cannot write null
    try:
        train = TrainConfig(**train_values)
    except ValidationError as exc:
        error = _one_line(exc, "train", train_values, source)
        if "unknown key" in str(error):
            error = ConfigFileError(f"{error}; {_known_keys('train', TrainConfig)}")
        raise error from None
    if isinstance(model, str):
        from zoo.registry import PRESET

        if model not in PRESET:  # a preset's name is never a path
            _check_relative(path, "model", model, file=True)
    if task.data is not None:
        _check_relative(path, "[task] data", task.data)
    return RunFile(
        source=source,
        model=model,
        out=out,
        backend=dict(backend),
        task=task.model_dump(exclude_unset=True),
        train={key: getattr(train, key) for key in train_values},
    )


def resolved_config(
    *, model: str | dict[str, Any], out: str | Path, backend: dict[str, str], task: dict[str, Any], train: TrainConfig
) -> dict[str, Any]:
    """Everything that decides a run, in the file layout :func:`load_run_file` reads back."""
    return {
        "model": model,
        "out": str(out),
        "backend": dict(backend),
        "task": TaskTable(**task).model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
    }


def write_resolved(out_dir: str | Path, config: dict[str, Any]) -> Path:
    """``out_dir/config.json``, written atomically (a killed run never leaves half a file)."""
    from zoo.checkpoint import atomic_write_text

    path = Path(out_dir) / RESOLVED_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(config, indent=1) + "\n")
    return path
