"""Every constrained config key refuses an invalid value, with an error naming the key and the value or the
constraint (as scikit-learn's common tests check every estimator's parameter constraints).

The constrained keys are found by walking the models: choices (Literal, Enum), numeric bounds, lengths,
patterns and validators. Each gets an invalid value injected into an otherwise valid config (a shipped example,
or one below for the sections none of them has); the test fails if any constrained key went unexercised, so a
new key is covered as soon as it exists.
"""

from __future__ import annotations

import copy
import enum
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from raymlops.config import PipelineConfig, load_config
from raymlops.config.loader import _Loader
from raymlops.config.training import SearchSpace
from raymlops.errors import ConfigError, ConfigIssue
from tests.conftest import ROOT

# Sections no shipped config has: a Redis online store, the other preprocessing steps.
EXTRA = """\
name: every-step
sources:
  events: {format: parquet, path: data/x.parquet, timestamp: ts}
features:
  online_store: {type: redis, url: "redis://127.0.0.1:6379/0"}
  entities: [{name: customer, join_keys: [customer_id]}]
  views:
    - {name: stats, entity: customer, source: events, timestamp: ts, fields: [balance]}
training:
  source: events
  label: y
  task: binary
  preprocessing:
    - {type: select, columns: [a, b]}
    - {type: drop, columns: [b]}
    - {type: minmax_scale, columns: [a]}
    - {type: custom, function: "tests.unit.helpers:double_x"}
  model: {type: xgboost}
"""

BAD_CHOICE = "not-a-choice"
# Values tried against a key's validators until one is refused as invalid (not merely of the wrong type).
CANDIDATES: list[Any] = [
    "not valid!",
    "",
    "models:/bad uri",
    "http://x",
    -1,
    0,
    101,
    1.5,
    [101.5],
    [-1.5],
    {"bad_space": [1, 2]},
    {"k": {"bad_space": [1, 2]}},
]
BOUNDS = {"ge": "greater than or equal to", "gt": "greater than", "le": "less than or equal to", "lt": "less than"}
Facet = tuple[type[BaseModel], str, str]  # (model, field, what is constrained)


# ------------------------------------------------------------- what is constrained


def _walk_types(tp: Any) -> typing.Iterator[Any]:
    """Every type inside an annotation (not into models)."""
    yield tp
    if typing.get_origin(tp) is typing.Annotated:
        yield from _walk_types(typing.get_args(tp)[0])
    elif typing.get_origin(tp) is not Literal:
        for a in typing.get_args(tp):
            yield from _walk_types(a)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_choice(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum))


def _validated(model: type[BaseModel], name: str, field: FieldInfo) -> bool:
    decorators = model.__pydantic_decorators__.field_validators.values()
    if any(name in d.info.fields for d in decorators):
        return True
    return any(
        hasattr(m, "func")
        for t in _walk_types(field.rebuild_annotation())
        if typing.get_origin(t) is typing.Annotated
        for m in t.__metadata__
    )


def facets(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    out = []
    for meta in field.metadata:
        out += [f"bound:{attr}" for attr in BOUNDS if getattr(meta, attr, None) is not None]
        out += [f"length:{attr}" for attr in ("min_length", "max_length") if getattr(meta, attr, None) is not None]
        if getattr(meta, "pattern", None) is not None:
            out.append("pattern")
    if any(_is_choice(t) for t in _walk_types(field.annotation)):
        out.append("choice")
    if _validated(model, name, field):
        out.append("validator")
    return out


def all_models() -> list[type[BaseModel]]:
    """Every model reachable from the root, and the search space (a params value parsed by a validator)."""
    found: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [PipelineConfig, SearchSpace]
    while todo:
        m = todo.pop()
        if m in found:
            continue
        found.append(m)
        todo += [t for f in m.model_fields.values() for t in _walk_types(f.rebuild_annotation()) if _is_model(t)]
    return found


def required_facets() -> set[Facet]:
    return {
        (m, name, facet) for m in all_models() for name, f in m.model_fields.items() for facet in facets(m, name, f)
    }


# ------------------------------------------------------------------ invalid values


def _placeholder(tp: Any) -> Any:
    """A valid value of a type, for the other places of a tuple."""
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    return {int: 1, float: 1.0, bool: True}.get(tp, "x")


def _bad_choice(tp: Any) -> Any:
    """A value of the type's shape with BAD_CHOICE where a choice goes, or None if it has no choice."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_choice(tp):
        return BAD_CHOICE
    if origin is typing.Annotated:
        return _bad_choice(args[0])
    if origin in (typing.Union, types.UnionType):
        return next((v for a in args if (v := _bad_choice(a)) is not None), None)
    if origin is list:
        inner = _bad_choice(args[0])
        return None if inner is None else [inner]
    if origin is dict:
        inner = _bad_choice(args[1])
        return None if inner is None else {"k": inner}
    if origin is tuple:
        for i, a in enumerate(args):
            inner = _bad_choice(a)
            if inner is not None:
                return [_placeholder(b) if j != i else inner for j, b in enumerate(args)]
    return None


def _bare(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def cases(facet: str, field: FieldInfo) -> list[tuple[Any, list[str]]]:
    """(invalid value, what the error must say besides the key path: any one of these) to try for a facet."""
    if facet.startswith("bound:"):
        attr = facet.split(":")[1]
        limit = next(getattr(m, attr) for m in field.metadata if getattr(m, attr, None) is not None)
        bad = {"ge": limit - 1, "gt": limit, "le": limit + 1, "lt": limit}[attr]
        return [(bad, [f"got {bad!r}; input should be {BOUNDS[attr]} {limit}"])]
    if facet.startswith("length:"):
        attr = facet.split(":")[1]
        n = next(getattr(m, attr) for m in field.metadata if getattr(m, attr, None) is not None)
        size = n - 1 if attr == "min_length" else n + 1
        bad = (
            {f"k{i}": "x" for i in range(size)} if typing.get_origin(_bare(field.annotation)) is dict else ["x"] * size
        )
        return [(bad, [f"at least {n} item" if attr == "min_length" else f"at most {n} item"])]
    if facet == "pattern":
        pattern = next(m.pattern for m in field.metadata if getattr(m, "pattern", None) is not None)
        bad = next(v for v in ("not valid!", "-", "ftp://x") if not re.search(pattern, v))
        return [(bad, [f"got {bad!r}; string should match pattern"])]
    if facet == "choice":
        bad = _bad_choice(field.annotation)
        assert bad is not None, "a choice was found but no value could be built for it"
        return [(bad, [repr(BAD_CHOICE)])]
    return [(bad, _shown(bad)) for bad in CANDIDATES]


def _shown(bad: Any) -> list[str]:
    """How an error may name a refused value: quoted as repr or JSON, or for a mapping by its key."""
    if isinstance(bad, dict):
        key = next(iter(bad))
        return _shown(next(iter(bad[key]))) if isinstance(bad[key], dict) and key == "k" else _shown(key)
    return [repr(bad), f'"{bad}"'] if isinstance(bad, str) else [str(bad)]


# -------------------------------------------------------------------- injection


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def instances(obj: Any, path: tuple = ()) -> typing.Iterator[tuple[tuple, BaseModel]]:
    """(data path, model) of every section of a loaded config, defaults included."""
    if isinstance(obj, BaseModel):
        yield path, obj
        for name, field in type(obj).model_fields.items():
            yield from instances(getattr(obj, name), path + (field.alias or name,))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from instances(item, path + (i,))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from instances(item, path + (key,))


def inject(data: dict, cfg: BaseModel, section: tuple, key: str, value: Any) -> dict:
    """A copy of the YAML data with ``value`` at ``section.key``; sections the config only has by default are
    written out (a variant by its `type`)."""
    data = copy.deepcopy(data)
    node: Any = data
    model: Any = cfg
    for part in section:
        model = (
            model[part]
            if isinstance(part, int) or isinstance(model, dict)
            else getattr(model, next(n for n, f in type(model).model_fields.items() if (f.alias or n) == part))
        )
        if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
            tag = getattr(model, "type", None) if isinstance(model, BaseModel) else None
            node[part] = {"type": tag} if isinstance(tag, str) else {}
        node = node[part]
    node[key] = value
    return data


def issues_of(tmp_path: Path, data: dict) -> tuple[Path, list[ConfigIssue]]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        load_config(path)
    except ConfigError as e:
        return path, e.issues
    return path, []


def bases(tmp_path: Path) -> list[tuple[str, dict, PipelineConfig]]:
    texts = {p.name: p.read_text() for p in sorted((ROOT / "configs").glob("*.yaml"))} | {"EXTRA": EXTRA}
    out = []
    for name, text in texts.items():
        data = yaml.load(text, Loader=_Loader)  # keys as written: `on:` stays a string
        path, found = issues_of(tmp_path, data)
        assert not found, f"{name} must load as it is: {[str(i) for i in found]}"
        out.append((name, data, load_config(path)))
    return out


# ------------------------------------------------------------------------- test


def test_every_constrained_key_refuses_an_invalid_value_naming_key_and_value_or_constraint(tmp_path):
    required = required_facets()
    assert len(required) > 100, "the walk found too few constrained keys"
    done: set[Facet] = set()
    why: dict[Facet, str] = {}
    for base, data, cfg in bases(tmp_path):
        for section, obj in instances(cfg):
            model = type(obj)
            for name, field in model.model_fields.items():
                key = field.alias or name
                where = _dotted(section + (key,))
                for facet in facets(model, name, field):
                    if (model, name, facet) in done:
                        continue
                    for bad, says in cases(facet, field):
                        file, found = issues_of(tmp_path, inject(data, cfg, section, key, bad))
                        ours = [
                            i
                            for i in found
                            if i.path == where
                            or i.path.startswith((f"{where}.", f"{where}["))
                            or f"{i.path}.{i.message}".startswith(f"{where}:")
                        ]
                        if facet == "validator":  # refused by the check itself, not as a wrong type
                            ours = [i for i in ours if "input should be" not in i.message]
                        named = [i for i in ours if any(s in i.message for s in says)]
                        if named:
                            assert all(i.file == str(file) and i.line for i in named), [str(i) for i in named]
                            done.add((model, name, facet))
                            break
                        why[(model, name, facet)] = (
                            f"{base}: {where} = {bad!r} gave {[str(i) for i in found] or 'no error'}; expected {says}"
                        )
                    else:
                        if facet != "validator":  # a choice, bound, length or pattern is refused wherever it is
                            pytest.fail(why[(model, name, facet)])
    missing = sorted(
        f"{m.__name__}.{name} ({facet}): {why.get((m, name, facet), 'in no config')}"
        for m, name, facet in required - done
    )
    assert not missing, (
        "constrained keys not exercised (add a section that has them to EXTRA, or a value to "
        "CANDIDATES that their validator refuses):\n" + "\n".join(missing)
    )
