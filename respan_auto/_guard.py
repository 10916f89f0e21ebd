"""Never raise into user code: failures inside our own work are logged once and dropped."""

from __future__ import annotations

import logging

logger = logging.getLogger("respan_auto")

_reported: set[str] = set()


def report_once(where: str, exc: BaseException) -> None:
    """Log an internal failure at debug level, once per place, without the exception's text.

    The text is left out on purpose: it may quote request data (prompts, headers).
    """
    if where in _reported:
        return
    _reported.add(where)
    logger.debug("respan_auto: %s failed (%s); further failures here are not logged", where, type(exc).__name__)


def warn_once(key: str, message: str, *args: object) -> None:
    """Warn about a condition the user should know of (bad config, unknown SDK layout), once."""
    if key in _reported:
        return
    _reported.add(key)
    logger.warning(message, *args)
