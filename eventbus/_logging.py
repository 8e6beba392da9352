"""The library's own diagnostics: structlog's API, emitted as standard :mod:`logging` records.

A library must not choose where its diagnostics go. With structlog's defaults
(nothing configured) they would be printed on stdout -- in the middle of
``eventbus submit --json``'s JSON lines -- with rich tracebacks that show
local variables, where a secret may sit. Each logger made here is structlog's,
bound to ``logging.getLogger(name)``: records reach the handlers the
application set up, or Python's last-resort handler (stderr, warnings and
above) when it set none. The fields ride along as attributes of the record
(``record.subscriber``, ...; ``record.event`` is the event name) and in its
message as ``key=value``.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["get_logger"]

_KWARGS = ("exc_info", "stack_info", "stacklevel")
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _to_record(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    kwargs = {name: event_dict.pop(name) for name in _KWARGS if name in event_dict}
    event = str(event_dict.pop("event"))
    message = " ".join([event, *(f"{key}={value!r}" for key, value in event_dict.items())])
    extra = {(f"field_{key}" if key in _RESERVED else key): value for key, value in event_dict.items()}
    return {"msg": message, "extra": {**extra, "event": event}, **kwargs}


class _Redacting(logging.Filter):
    """Secrets out of the record's message and traceback text, as :func:`eventbus.subscribers.log.redact` finds
    them: an exception raised by a user's handler may carry a token in its text (``boom token=...``).

    The traceback is formatted here into ``exc_text``, which the standard :class:`logging.Formatter` prints as it
    is; ``exc_info`` stays for handlers that want the exception itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from eventbus.subscribers.log import redact  # (that module imports the event model; this one is imported early)

        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return True


_FORMATTER = logging.Formatter()
_REDACTING = _Redacting()


def get_logger(name: str) -> Any:
    """A structlog logger for ``name`` whose entries become records of the standard logger ``name``."""
    logger = logging.getLogger(name)
    if _REDACTING not in logger.filters:
        logger.addFilter(_REDACTING)
    return structlog.wrap_logger(logger, processors=[_to_record], wrapper_class=structlog.stdlib.BoundLogger)
