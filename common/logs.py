"""Logging to stderr: readable lines for people, JSON lines for log shippers (--log-format json).

Secrets never reach a log line: config objects log only their non-secret fields, and
`redact()` is used wherever a URL might carry a password.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for k, v in getattr(record, "fields", {}).items():
            out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        s = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            s += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(s)


def setup(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pynetdicom", "uvicorn.access", "sigmf", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
