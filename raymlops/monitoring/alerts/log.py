"""The log sink: one JSON line per event appended to a file, plus a WARNING on the 'raymlops.alerts' logger."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from raymlops.config.monitoring import LogAlert
from raymlops.monitoring.alerts.base import AlertSink, summary
from raymlops.storage.files import append_line, is_uri

logger = logging.getLogger("raymlops.alerts")


class LogSink(AlertSink):
    """Appends, flushes and fsyncs one line per event (one writer at a time, however many sinks and
    processes share the file); the file is rotated at ``rotate_mb``."""

    def __init__(self, cfg: LogAlert, default_path: str):
        path = str(cfg.path or default_path)
        self.path = path if is_uri(path) else Path(path).resolve()
        self.name = f"log:{self.path}"
        self.on = set(cfg.on)
        self.cooldown_s = cfg.cooldown_s
        self.rotate_bytes, self.keep = (cfg.rotate_mb * 1024 * 1024 if cfg.rotate_mb else None), cfg.keep

    def send(self, event: dict[str, Any]) -> None:
        # Locally locked across threads and processes; on an object store, one segment object per event.
        append_line(self.path, event, self.rotate_bytes, self.keep)
        logger.warning("alert %s", summary(event))
