"""Sealed one-time links: the contract between enrolment, which seals a set-password or sign-up
confirm link into its event, and the mailer, which opens it only to put it in the mail.

A link that works (it sets a password, it confirms a sign-up) must never be readable on Kafka:
anyone who can read a topic could use it. Enrolment encrypts the link and its expiry with
Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`); only enrolment and the mailer hold the
keys (`MEER_MAILER_LINK_KEYS`, newest first: the first seals, every key listed opens, so a
key rotates by putting the new one in front and removing the old one after the longest link
lifetime). Each key is a long random string; the Fernet key is its SHA-256. A sealed link
cannot be opened after its expiry, so an old event is useless even with the key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SealedLinkError(ValueError):
    """The sealed link cannot be opened: wrong or retired key, tampered with, or expired."""


@functools.lru_cache(maxsize=8)
def link_keys(spec: str) -> MultiFernet:
    """The keys from 'newest,older,...' (comma separated); the first one seals."""
    secrets = [part.strip() for part in spec.split(",") if part.strip()]
    if not secrets:
        raise ValueError("at least one mailer link key is needed")
    if len(set(secrets)) != len(secrets):
        raise ValueError("a mailer link key is listed twice")
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest())) for s in secrets])


def seal_link(url: str, *, keys: MultiFernet, expires_at: datetime, now: datetime) -> str:
    """The link, readable only with the keys and only until it expires."""
    body = json.dumps({"u": url, "x": int(expires_at.timestamp())}, separators=(",", ":"))
    return keys.encrypt_at_time(body.encode(), int(now.timestamp())).decode("ascii")


def open_link(sealed: str, *, keys: MultiFernet, now: datetime) -> str:
    """The link inside, or SealedLinkError when it is not ours, was changed, or has expired."""
    try:
        body = json.loads(keys.decrypt(sealed.encode("ascii")))
        url, expires_at = str(body["u"]), int(body["x"])
    except (InvalidToken, UnicodeEncodeError, ValueError, KeyError, TypeError):
        raise SealedLinkError("not a sealed link of ours") from None
    if now.timestamp() >= expires_at:
        raise SealedLinkError("the link has expired")
    return url
