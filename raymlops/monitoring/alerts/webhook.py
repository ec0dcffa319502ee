"""The webhook sink: a JSON POST with a Slack-compatible 'text' field (stdlib urllib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from raymlops.config.monitoring import WebhookAlert
from raymlops.monitoring.alerts.base import AlertSink, summary

ICONS = {"warning": ":warning:", "critical": ":rotating_light:"}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET and lose the body: treat it as a failure instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink(AlertSink):
    """POSTs each event as JSON; any non-2xx answer, timeout or connection error raises."""

    def __init__(self, cfg: WebhookAlert):
        self.cfg = cfg
        self.name = f"webhook:{urllib.parse.urlsplit(cfg.url).netloc}"  # not the path: Slack URLs hold a token
        self.on = set(cfg.on)
        self.cooldown_s = cfg.cooldown_s
        self.retries = cfg.retries
        self._opener = urllib.request.build_opener(_NoRedirect)

    def payload(self, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "text": f"{ICONS.get(event.get('severity'), ':warning:')} {summary(event)}"}

    def send(self, event: dict[str, Any]) -> None:
        body = json.dumps(self.payload(event), default=str).encode()
        headers = {"Content-Type": "application/json", **self.cfg.headers}
        req = urllib.request.Request(self.cfg.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.cfg.timeout_s) as resp:
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{self.name} answered HTTP {e.code}") from e
        if not 200 <= status < 300:
            raise RuntimeError(f"{self.name} answered HTTP {status}")
