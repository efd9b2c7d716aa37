"""Credentials never reach a log line: a logging filter that masks them.

Masked wherever they appear in a record's message or arguments: bearer tokens
(``Bearer …``, any JWT-shaped string), ``token=``/``ticket=``/``password=``/``key=``
query or form values, device keys (``cpd_…``) and the stream's ``bearer.…``
WebSocket subprotocol.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "[redacted]"
_PATTERNS = (
    # a JWT anywhere: three base64url parts, the first two starting like JSON objects
    re.compile(r"eyJ[\w-]*\.eyJ[\w-]*\.[\w-]*"),
    re.compile(r"(?i)(bearer[ .])[\w~+/=.-]+"),
    re.compile(
        r"(?i)(\b(?:access_|refresh_|id_)?(?:token|ticket|password|secret|api_key|key)=)[^&\s\"']+"
    ),
    re.compile(r"(?i)(x-device-key:\s*)\S+"),
    re.compile(r"cpd_[\w-]+"),
)


def redact(text: str) -> str:
    """``text`` with every credential it holds masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactFilter(logging.Filter):
    """A handler filter that masks credentials in each record it passes on."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message and arguments in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with ``RedactFilter`` on every handler, and
    CityPilot's own loggers sent through the same handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["citypilot"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    # every other library's warnings (MQTT, NATS, HTTP clients) through the filter too
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
