"""structlog JSON logs: one object a line, message ids as fields, numbers masked.

Every event goes through `_mask_numbers`, so a phone number passed under any of
the keys in NUMBER_KEYS is masked even if the call site forgot to, and
`_drop_secrets` removes keys that could carry credentials.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from gateway.core.numbers import mask

NUMBER_KEYS = frozenset({"to", "from_", "sender", "destination_addr", "source_addr", "number"})
SECRET_KEYS = frozenset({"password", "api_key", "secret", "authorization", "callback_secret"})


def _mask_numbers(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in NUMBER_KEYS & event.keys():
        value = event[key]
        if isinstance(value, str):
            event[key] = mask(value)
    return event


def _drop_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in SECRET_KEYS & event.keys():
        event[key] = "***"
    return event


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(level: str = "info", stream: Any = None) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_numbers,
            _drop_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)
