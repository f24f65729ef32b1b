"""Sending through SMTP with aiosmtplib: one reused connection per sender worker."""

from __future__ import annotations

import re
from typing import Protocol

import aiosmtplib

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


def without_addresses(reply: str) -> str:
    """An SMTP reply as kept in delivery errors and mail.failed: servers often quote the
    recipient's address ("550 5.1.1 <ans@example.org>: unknown"); that is personal data."""
    return _ADDRESS.sub("<address>", reply)


class MailTransport(Protocol):
    """Port for whatever delivers a message; raises SmtpRefused or SmtpUnavailable."""

    async def send(self, raw: bytes, *, sender: str, recipient: str) -> None: ...

    async def close(self) -> None: ...


class SmtpRefused(Exception):
    """The server refused this message for good (5xx): do not try again."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"{code} {without_addresses(reply)}")
        self.code = code


class SmtpUnavailable(Exception):
    """A temporary failure (4xx, connection lost, timeout): try again later."""


class SmtpClient:
    """One SMTP connection, opened on first use and reopened after a failure."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._smtp = aiosmtplib.SMTP(
            hostname=host, port=port, username=username, password=password, start_tls=start_tls, timeout=timeout
        )

    async def send(self, raw: bytes, *, sender: str, recipient: str) -> None:
        try:
            if not self._smtp.is_connected:
                await self._smtp.connect()
            await self._smtp.sendmail(sender, [recipient], raw)
        except aiosmtplib.SMTPRecipientsRefused as error:
            # Refused at RCPT TO: the connection itself is still fine.
            refusal = error.recipients[0]
            if refusal.code >= 500:
                raise SmtpRefused(refusal.code, refusal.message) from None
            raise SmtpUnavailable(f"{refusal.code} {without_addresses(refusal.message)}") from None
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500:
                raise SmtpRefused(error.code, error.message) from None
            await self._reset()
            raise SmtpUnavailable(f"{error.code} {without_addresses(error.message)}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            await self._reset()
            raise SmtpUnavailable(type(error).__name__) from None

    async def _reset(self) -> None:
        self._smtp.close()

    async def close(self) -> None:
        if self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except aiosmtplib.SMTPException:
                self._smtp.close()
