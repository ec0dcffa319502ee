"""The Markdown reference of the pipeline YAML, generated from the config models (`raymlops schema --markdown`).

Every section is a model: its docstring, then one row per key with its type, default, constraints and
description. A union of models told apart by `type:` gets a section per variant.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from raymlops.config.features import _check_duration
from raymlops.config.models import PipelineConfig
from raymlops.config.training import TASK_METRICS, SearchSpace, _parse_param

REGENERATE = "raymlops schema --markdown > docs/config-reference.md"

# Annotated[..., AfterValidator(f)] types shown by name rather than by the type they validate.
_NAMED: dict[Any, str] = {_check_duration: "duration (`30s`, `15m`, `12h`, `7d`)", _parse_param: "value"}

# Constraint attributes of a field's metadata (annotated_types and pydantic's pattern), as written here.
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "multiple_of": "multiple of"}


@dataclass
class _Section:
    path: str  # the YAML path, e.g. training.model or sources.<name>
    model: type[BaseModel]
    tag: str | None  # the `type:` of a variant of a union
    depth: int

    @property
    def title(self) -> str:
        if not self.path:
            return "Top level"
        return f"`{self.path}` (type: {self.tag})" if self.tag else f"`{self.path}`"

    @property
    def anchor(self) -> str:
        """GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces as -."""
        return re.sub(r"[^\w\- ]", "", self.title.lower()).replace(" ", "-")


def _models(tp: Any) -> list[type[BaseModel]]:
    """The models a type is, or is a union of (inside Annotated, Optional and Union)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _models(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _models(a)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return None
    return str(typing.get_args(field.annotation)[0])


def _validators(tp: Any) -> list[Any]:
    """The validator functions in an Annotated type's metadata."""
    if typing.get_origin(tp) is not typing.Annotated:
        return []
    return [getattr(m, "func", None) for m in tp.__metadata__]


def _children(tp: Any) -> list[tuple[str, type[BaseModel], bool]]:
    """(path suffix, model, is a variant) of the models inside a field's type: `[]` for list items, `.<name>`
    for mapping values, `.<param>` for a search space in params."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        if _parse_param in _validators(tp):
            return [("", SearchSpace, False)]
        return _children(typing.get_args(tp)[0])
    if origin is list:
        return [("[]" + s, m, v) for s, m, v in _children(typing.get_args(tp)[0])]
    if origin is dict:
        inner = _children(typing.get_args(tp)[1])
        name = "<param>" if any(m is SearchSpace for _, m, _ in inner) else "<name>"
        return [(f".{name}" + s, m, v) for s, m, v in inner]
    if origin in (typing.Union, types.UnionType):
        models = _models(tp)
        variants = len(models) > 1 and all(_tag(m) for m in models)
        out = [("", m, variants) for m in models]
        others = [a for a in typing.get_args(tp) if not _models(a)]
        return out + [c for a in others for c in _children(a)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [("", tp, False)]
    return []


def _key(name: str, field: FieldInfo) -> str:
    return field.alias or name


def sections() -> list[_Section]:
    """Every section of the config, depth first from the root, in the models' field order."""
    out: list[_Section] = []
    seen: set[tuple[str, type[BaseModel]]] = set()

    def visit(model: type[BaseModel], path: str, tag: str | None, depth: int) -> None:
        if (path, model) in seen:
            return
        seen.add((path, model))
        out.append(_Section(path, model, tag, depth))
        for name, field in model.model_fields.items():
            for suffix, child, variant in _children(field.rebuild_annotation()):
                child_path = f"{path}.{_key(name, field)}{suffix}" if path else f"{_key(name, field)}{suffix}"
                visit(child, child_path, _tag(child) if variant else None, depth + 1)

    visit(PipelineConfig, "", None, 0)
    return out


# ------------------------------------------------------------------- rendering


def _escape(text: str) -> str:
    """Markdown-safe text for a table cell: `<...>` is not HTML, `*` is no emphasis, `|` ends no cell (code
    spans are kept as written, but for `|`)."""
    parts = text.split("`")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", part).replace("*", "\\*")
        parts[i] = part.replace("|", "\\|")
    return "`".join(parts)


def _yaml(value: Any) -> str:
    """A value as it would be written in the YAML, in a code span."""
    if isinstance(value, BaseModel):
        tag = _tag(type(value))
        return f"`{{type: {tag}}}`" if tag else "`{}` (its defaults)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, (int, float)):
        return f"`{value}`"
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
    return f"`{text}`"


def _type(tp: Any, links: dict[type[BaseModel], _Section]) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        named = [_NAMED[f] for f in _validators(tp) if f in _NAMED]
        if _parse_param in _validators(tp):
            return f"value or [search space](#{links[SearchSpace].anchor})"
        return named[0] if named else _type(typing.get_args(tp)[0], links)
    if origin is Literal:
        return " | ".join(f"`{v}`" for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        models = _models(tp)
        if len(models) > 1 and all(_tag(m) for m in models):
            variants = " | ".join(f"[{_tag(m)}](#{links[m].anchor})" for m in models)
            return f"one of {variants} (by `type`)"
        parts = [_type(a, links) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin is list:
        return f"list of {_type(typing.get_args(tp)[0], links)}"
    if origin is tuple:
        return "[" + ", ".join(_type(a, links) for a in typing.get_args(tp)) + "]"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"mapping of {_type(key, links)} to {_type(value, links)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[`{links[tp].path}`](#{links[tp].anchor})"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    return names.get(tp, "any")


def _constraints(field: FieldInfo) -> str:
    out: list[str] = []
    for meta in field.metadata:
        for attr, sign in _BOUNDS.items():
            if getattr(meta, attr, None) is not None:
                out.append(f"{sign} {getattr(meta, attr)}")
        if getattr(meta, "min_length", None) is not None:
            out.append(f"at least {meta.min_length} item{'s' if meta.min_length != 1 else ''}")
        if getattr(meta, "max_length", None) is not None:
            out.append(f"at most {meta.max_length} items")
        if getattr(meta, "pattern", None) is not None:
            out.append(f"matches `{meta.pattern}`")
    return ", ".join(out)


def _default(field: FieldInfo, discriminator: bool) -> str:
    if discriminator or field.is_required():
        return "required"
    return _yaml(field.get_default(call_default_factory=True, validated_data={}))


def _doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _table(section: _Section, links: dict[type[BaseModel], _Section]) -> list[str]:
    rows = ["| Key | Type | Default | Constraints | Description |", "| --- | --- | --- | --- | --- |"]
    fields = section.model.model_fields
    order = sorted(fields, key=lambda n: not (section.tag and n == "type"))  # a variant's `type` first
    for name in order:
        field = fields[name]
        discriminator = section.tag is not None and name == "type"
        tp = _type(field.rebuild_annotation(), links)
        description = field.description or ""
        if discriminator:
            tp, description = f"`{section.tag}`", f"Selects this variant. {description}".strip()
        cells = [f"`{_key(name, field)}`", tp, _default(field, discriminator), _constraints(field), description]
        rows.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return rows


def markdown_reference() -> str:
    """The whole config as Markdown: a contents list, then every section with a table of its keys."""
    found = sections()
    links = {s.model: s for s in found}
    by_task = "; ".join(f"{task}: {', '.join(metrics)}" for task, metrics in TASK_METRICS.items())
    lines = [
        "# Pipeline config reference",
        "",
        "Generated from the config models (`raymlops/config/`); do not edit by hand. Regenerate with",
        f"`{REGENERATE}`. `raymlops schema` prints the same models as JSON Schema (for editors), and "
        "`raymlops validate CONFIG` checks a file against them.",
        "",
        "Every section refuses unknown keys. A key whose type is a link is a mapping described in its own "
        "section; `one of ... (by type)` is chosen by its `type:` key. `<name>` stands for a name you choose, "
        "`[]` for each item of a list. Besides the constraints listed, checks that span keys and sections "
        "(a source that exists, a metric of the task, ...) run when the file is loaded; the descriptions say "
        "what each needs.",
        "",
        f"The metrics of each `training.task` (for every `metric` key): {by_task}.",
        "",
        "## Contents",
        "",
    ]
    lines += [f"{'  ' * max(0, s.depth - 1)}- [{s.title}](#{s.anchor})" for s in found]
    for s in found:
        lines += ["", f"{'##' if s.depth <= 1 else '###'} {s.title}", "", _escape(_doc(s.model)), ""]
        lines += _table(s, links)
    return "\n".join(lines) + "\n"
