"""structlog set-up: one JSON object a line, secrets dropped, customer contacts masked.

Redaction is a processor, so it applies to every event whoever logs it: keys that name a secret
(token, secret, password, authorization, assertion, refresh) are replaced outright, a bearer
token or a JWT inside any text is too, and e-mail addresses and phone numbers inside any string
value are masked unless masking is turned off. The standard library's loggers (urllib3, msal,
apscheduler, werkzeug) go through the same chain: one JSON object a line, redacted alike.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|assertion|cookie", re.I)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w-])[+(]?\d[\d ().-]{6,}\d(?![\w-])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_NOT_A_PHONE = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b)"
)  # date-times and GUIDs (referral ids): digits and dashes, but never a phone number
_MAX_PHONE_DIGITS = 15  # E.164; a longer run of digits is an id or an amount
REDACTED = "[redacted]"
_SECRET_TEXT = re.compile(
    r"(?i:(\bbearer\s+))[\w.~+/=-]+|\beyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*"
)  # "Bearer <token>" and JWTs (a JWT's header always begins eyJ), in free text


def mask_contacts(text: str) -> str:
    """``jane.doe@contoso.com`` → ``j***@contoso.com``; ``+1 425 555 0100`` → ``***0100``."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    # Date-times and GUIDs are not phone numbers: mask only the text between them.
    parts = _NOT_A_PHONE.split(text)
    return "".join(p if i % 2 else _PHONE.sub(_mask_phone, p) for i, p in enumerate(parts))


def _mask_phone(match: re.Match[str]) -> str:
    value = match.group(0)
    digits = re.sub(r"\D", "", value)
    if _ISO_DATE.match(value) or not 7 <= len(digits) <= _MAX_PHONE_DIGITS:
        return value
    return "***" + digits[-4:]


class Redactor:
    """A structlog processor that drops secrets and masks customer contact details."""

    def __init__(self, *, mask_customer_contacts: bool = True) -> None:
        self.mask = mask_customer_contacts

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            event[key] = self._clean(key, value)
        return event

    def _clean(self, key: str, value: object) -> object:
        if _SECRET_KEY.search(key) and value is not None and not isinstance(value, bool | int):
            return REDACTED
        if isinstance(value, str):
            value = _SECRET_TEXT.sub(lambda m: (m.group(1) or "") + REDACTED, value)
            return mask_contacts(value) if self.mask else value
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value


def processors(*, mask_customer_contacts: bool = True) -> list[Processor]:
    """The chain every event goes through, redaction last before rendering (the test suite
    logs through the same chain, so what it scans is what production would write)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(mask_customer_contacts=mask_customer_contacts),
        structlog.processors.JSONRenderer(sort_keys=False),
    ]


def configure_logging(
    *, level: str = "info", mask_customer_contacts: bool = True, stream: TextIO | None = None
) -> None:
    """JSON lines on ``stream`` (stderr by default) for structlog and the stdlib alike."""
    out = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=processors(mask_customer_contacts=mask_customer_contacts),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                Redactor(mask_customer_contacts=mask_customer_contacts),
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
