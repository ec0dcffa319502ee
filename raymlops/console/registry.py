"""Models for the console: registered models with versions, aliases, alias history (gate lines, who, why,
forced) and the promote / rollback actions, through the same ModelRegistry calls as `raymlops models`."""

from __future__ import annotations

import getpass

from raymlops.console.schemas import AliasMove, ModelInfo, ModelsPage, ModelVersionInfo, PromoteRequest, RollbackRequest
from raymlops.errors import RaymlopsError
from raymlops.registry import ModelRegistry


class ActionRefused(RaymlopsError):
    """A console action the request itself makes impossible (a 4xx naming the field)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def by(given: str) -> str:
    """Who acted, for the records: the name given in the form, else the console's OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{given.strip() or user} (console)"


def model_info(reg: ModelRegistry, m: dict) -> ModelInfo:
    return ModelInfo(
        name=m["name"],
        aliases={a: int(v) for a, v in m["aliases"].items()},
        versions=[ModelVersionInfo(**v) for v in reversed(m["versions"])],
        history=[AliasMove(**e) for e in reversed(reg.history(m["name"]))],
        gate=reg.gate(m["name"]),
    )


def models(reg: ModelRegistry, name: str | None = None) -> ModelsPage:
    return ModelsPage(tracking_uri=reg.uri, models=[model_info(reg, m) for m in reg.list(name)])


def promote(reg: ModelRegistry, name: str, req: PromoteRequest) -> AliasMove:
    """The CLI's promote; a forced promotion without a reason is refused before anything moves."""
    if req.force and not req.reason.strip():
        raise ActionRefused(
            "reason",
            "reason: a forced promotion must say why (it is recorded in the alias history); got an empty reason",
        )
    return AliasMove(
        **reg.promote(name, req.version, req.alias, force=req.force, by=by(req.by), reason=req.reason.strip() or None)
    )


def rollback(reg: ModelRegistry, name: str, req: RollbackRequest) -> AliasMove:
    return AliasMove(**reg.rollback(name, req.alias, by=by(req.by), reason=req.reason.strip() or None))
