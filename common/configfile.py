"""Load a TOML file into a pydantic model, refusing bad files with messages that name the key.

Every Zastava process validates its config at start and exits with code 2 on a bad one: an
operator editing a file at a checkpoint needs to know which key is wrong and why, not a traceback.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

M = TypeVar("M", bound=BaseModel)

EXIT_CONFIG = 2


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists one line per bad key."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class Strict(BaseModel):
    """Base for config sections: unknown keys are refused, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)


def resolve_path(v: Path, info: ValidationInfo) -> Path:
    """A path from a config file, relative to that file's folder (passed as context base_dir)."""
    base = (info.context or {}).get("base_dir")
    v = Path(os.path.expanduser(str(v)))
    return v if v.is_absolute() or base is None else (Path(base) / v)


def existing_file(v: Path, info: ValidationInfo) -> Path:
    v = resolve_path(v, info)
    if not v.is_file():
        raise ValueError(f"file not found: {v}")
    if not os.access(v, os.R_OK):
        raise ValueError(f"file not readable: {v}")
    return v


def _existing_dir(v: Path, info: ValidationInfo) -> Path:
    v = resolve_path(v, info)
    if not v.is_dir():
        raise ValueError(f"directory not found: {v}")
    return v


def _writable_dir(v: Path, info: ValidationInfo) -> Path:
    v = resolve_path(v, info)
    probe = v
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"directory cannot be created or written: {v} (nearest existing: {probe})")
    return v


# Config field types that check the file system when the config is loaded, not when first used.
ExistingFile = Annotated[Path, AfterValidator(existing_file)]
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]
WritableDir = Annotated[Path, AfterValidator(_writable_dir)]


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def describe_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        key = _key_path(tuple(p for p in e["loc"] if not str(p).startswith("function-")))
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif e["type"] == "missing":
            problems.append(f"missing key '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            problems.append(f"key '{key}': {msg} (got {shown})")
    return problems


def load_model(model: type[M], path: str | Path, base_dir: Path | None = None) -> M:
    """Parse and validate; relative paths in the file are resolved against the file's folder."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read config file: {e.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [f"not valid TOML: {e}"]) from None
    return validate_data(model, data, str(p), base_dir or p.resolve().parent)


def validate_data(model: type[M], data: dict, where: str, base_dir: Path) -> M:
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise ConfigError(where, describe_validation_error(e)) from None
