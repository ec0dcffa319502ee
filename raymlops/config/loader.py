"""Loads a pipeline YAML in one fixed order: read, interpolate, override, validate, cross-check.

Every failure becomes a ConfigIssue with the file, the line of the offending key and its dotted path;
all issues are collected and raised together as one ConfigError.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from raymlops.config.models import PipelineConfig, cross_field_issues
from raymlops.errors import ConfigError, ConfigIssue

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
SET_SOURCE = "--set"
KeyPath = tuple[Any, ...]  # keys and list indices from the root (a YAML key may be any scalar)


class _Doc:
    """Parsed YAML plus the line of every key path."""

    def __init__(self, file: str):
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.sources: dict[KeyPath, str] = {}
        self.issues: list[ConfigIssue] = []

    def line_of(self, path: KeyPath) -> tuple[str, int | None]:
        """The file and line of a key path, falling back to its nearest parent."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.sources.get(p, self.file), self.lines[p]
            p = p[:-1]
        return self.file, None

    def issue(self, path: KeyPath, message: str) -> None:
        file, line = self.line_of(path)
        self.issues.append(ConfigIssue(file, line, _dotted(path), message))


def _dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Loader(yaml.SafeLoader):
    """Mapping keys are taken as written: YAML 1.1 would read `on:` (alerts, retrain) as the boolean True."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for knode, _ in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:bool":
                knode.tag = "tag:yaml.org,2002:str"
        return super().construct_mapping(node, deep=deep)


def _key(knode: yaml.Node, path: KeyPath, doc: _Doc, ctor: yaml.SafeLoader) -> Any:
    return (
        knode.value
        if isinstance(knode, yaml.ScalarNode) and knode.tag.endswith(":bool")
        else _scalar(knode, path, doc, ctor)
    )


def _build(node: yaml.Node, path: KeyPath, doc: _Doc, ctor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            key = _key(knode, path, doc, ctor)
            kpath = path + (key,)
            if key in out:
                doc.issues.append(ConfigIssue(doc.file, knode.start_mark.line + 1, _dotted(kpath), "duplicate key"))
            doc.lines[kpath] = knode.start_mark.line + 1
            out[key] = _build(vnode, kpath, doc, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(item, path + (i,), doc, ctor))
        return items
    value = _scalar(node, path, doc, ctor)
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, doc)
    return value


def _scalar(node: yaml.Node, path: KeyPath, doc: _Doc, ctor: yaml.SafeLoader) -> Any:
    """A scalar's value; an invalid one (a date like 2024-02-30, an unknown !tag) becomes an issue."""
    try:
        return ctor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as e:
        problem = getattr(e, "problem", None) or str(e)
        doc.issues.append(ConfigIssue(doc.file, node.start_mark.line + 1, _dotted(path), f"invalid value: {problem}"))
        return None


def _interpolate(value: str, path: KeyPath, doc: _Doc) -> Any:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got is None or (got == "" and default is not None):
            if default is None:
                doc.issue(path, f"environment variable ${{{name}}} is not set (use ${{{name}:-default}})")
                return ""
            return default
        return got

    out = _VAR.sub(sub, value)
    # A value that was only a variable takes the type YAML would give it (numbers, booleans).
    if _VAR.fullmatch(value):
        try:
            parsed = yaml.safe_load(out)
            return parsed if isinstance(parsed, (int, float, bool)) else out
        except yaml.YAMLError:
            return out
    return out


def _apply_override(data: dict[str, Any], expr: str, doc: _Doc) -> None:
    if "=" not in expr:
        doc.issues.append(ConfigIssue(SET_SOURCE, None, expr, "expected KEY.PATH=VALUE"))
        return
    key, raw = expr.split("=", 1)
    parts: KeyPath = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):
        value = raw
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        in_list = isinstance(node, list) and isinstance(p, int) and p < len(node)
        nxt = node.get(p) if isinstance(node, dict) else (node[p] if in_list else None)
        if nxt is None:
            nxt = {}
            if isinstance(node, dict):
                node[p] = nxt
            else:
                doc.issues.append(ConfigIssue(SET_SOURCE, None, _dotted(parts[: i + 1]), "no such list item"))
                return
        node = nxt
    if isinstance(node, dict):
        node[parts[-1]] = value
    elif isinstance(node, list) and isinstance(parts[-1], int) and parts[-1] < len(node):
        node[parts[-1]] = value
    else:
        doc.issues.append(ConfigIssue(SET_SOURCE, None, _dotted(parts), "cannot set a key inside a non-mapping"))
        return
    doc.lines[parts] = 0
    doc.sources[parts] = SET_SOURCE


# ------------------------------------------------------------- pydantic errors


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated/list/dict."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _union_of_values(types_: list[Any]) -> bool:
    """Whether pydantic names the member it tried in an error's loc: a union of two or more types, other than
    models (a union of models is told apart by its `type:` tag, handled as such)."""
    members = [t for t in types_ if t is not type(None)]
    return len(members) > 1 and not all(isinstance(t, type) and issubclass(t, BaseModel) for t in members)


def _model_at(loc: KeyPath) -> tuple[type[BaseModel] | None, KeyPath]:
    """Walks the model classes along a pydantic loc; returns the model at its end and the data path."""
    current: list[Any] = [PipelineConfig]
    data_path: list[Any] = []
    member_next = False
    i = 0
    while i < len(loc):
        part = loc[i]
        if member_next and isinstance(part, str):
            # The member of a union pydantic tried ("literal['all']", "list[str]", "float"): not a key.
            member_next = False
            i += 1
            continue
        models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
        containers = [t for t in current if typing.get_origin(t) in (list, dict)]
        if models and isinstance(part, str):
            # A discriminated union puts the tag in the loc: pick that variant.
            tagged = [
                m
                for m in models
                if "type" in m.model_fields and part in typing.get_args(m.model_fields["type"].annotation)
            ]
            if len(models) > 1 and tagged:
                current = tagged
                i += 1
                continue
            field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
            data_path.append(part)
            if field is None:
                return None, tuple(data_path) + tuple(loc[i + 1 :])
            current = _unwrap(field.annotation)
            member_next = _union_of_values(current)
        elif containers:
            data_path.append(part)
            current = [t for c in containers for t in _unwrap(typing.get_args(c)[-1])]
            member_next = _union_of_values(current)
        else:
            data_path.append(part)
            return None, tuple(data_path) + tuple(loc[i + 1 :])
        i += 1
    models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
    return (models[0] if len(models) == 1 else None), tuple(data_path)


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        parent, _ = _model_at(tuple(err["loc"])[:-1])
        key = str(err["loc"][-1])
        if parent is not None:
            close = difflib.get_close_matches(key, list(parent.model_fields), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(parent.model_fields)}"
            return f"unknown key; {hint}"
        return "unknown key"
    msg = msg.removeprefix("Value error, ")
    msg = msg[0].lower() + msg[1:] if msg else msg
    if "input" in err and not isinstance(err["input"], (dict, list)) and kind not in ("value_error",):
        return f"got {err['input']!r}; {msg}"
    return msg


def _validation_issues(e: ValidationError, doc: _Doc) -> None:
    for err in e.errors():
        _, data_path = _model_at(tuple(err["loc"]))
        if err["type"] == "union_tag_invalid":
            tag, expected = err["ctx"]["tag"], [t.strip(" '") for t in err["ctx"]["expected_tags"].split(",")]
            close = difflib.get_close_matches(str(tag), expected, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            doc.issue(
                data_path + (err["ctx"]["discriminator"].strip("'"),),
                f"got {tag!r}; {hint}expected one of {', '.join(expected)}",
            )
            continue
        doc.issue(data_path, _message(err))


# ------------------------------------------------------------------------ API


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> PipelineConfig:
    """Loads and validates a pipeline YAML.

    Args:
        path: The YAML file.
        overrides: ``key.path=value`` strings applied after interpolation (values parsed as YAML).

    Returns:
        The validated config.

    Raises:
        ConfigError: with every issue found, each naming file, line and key path.
    """
    file = str(path)
    doc = _Doc(file)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError([ConfigIssue(file, None, "", f"cannot read config: {e.strerror}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {problem}")]) from None
    data = _build(node, (), doc, yaml.SafeLoader("")) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "the config must be a mapping of sections")])
    for expr in overrides or []:
        _apply_override(data, expr, doc)
    if doc.issues:
        raise ConfigError(doc.issues)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        _validation_issues(e, doc)
        raise ConfigError(doc.issues) from None
    for loc, msg in cross_field_issues(cfg):
        doc.issue(loc, msg)
    if doc.issues:
        raise ConfigError(doc.issues)
    return cfg


def json_schema() -> dict[str, Any]:
    """JSON Schema of the pipeline YAML, for editor validation."""
    schema = PipelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "raymlops pipeline"
    return schema
