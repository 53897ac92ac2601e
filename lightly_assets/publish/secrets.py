"""Keeping secrets out of messages: URLs with credentials, passwords, keys.

Targets name the environment variables that hold secrets, never the values; whatever text leaves a
target (errors, logs, metadata) goes through `mask` with the secrets known to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (longest first) replaced by `***`."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """The URL with user-info and query string masked, for display."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    query = MASK if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def userinfo(url: str) -> list[str]:
    """User name and password embedded in a URL (as written and decoded), to be masked wherever they show up."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [v for v in (parts.username, parts.password) if v]
    return found + [unquote(v) for v in found if unquote(v) != v]
