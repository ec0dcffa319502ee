"""The log sink: one JSON line per event appended to a file, plus a WARNING on the 'raymlops.alerts' logger."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from raymlops.config.monitoring import LogAlert
from raymlops.data.files import append_line
from raymlops.monitoring.alerts.base import AlertSink, summary

logger = logging.getLogger("raymlops.alerts")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    """One lock per file in this process, so sinks sharing a file never interleave lines."""
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


class LogSink(AlertSink):
    """Appends, flushes and fsyncs one line per event under a per-file lock; the file is rotated at
    ``rotate_mb``."""

    def __init__(self, cfg: LogAlert, default_path: str):
        self.path = Path(cfg.path or default_path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"log:{self.path}"
        self.on = set(cfg.on)
        self.cooldown_s = cfg.cooldown_s
        self.rotate_bytes, self.keep = (cfg.rotate_mb * 1024 * 1024 if cfg.rotate_mb else None), cfg.keep
        self._lock = _file_lock(self.path)

    def send(self, event: dict[str, Any]) -> None:
        with self._lock:
            append_line(self.path, event, self.rotate_bytes, self.keep)
        logger.warning("alert %s", summary(event))
