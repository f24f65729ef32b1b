"""A real SMTP server for tests and benchmarks (aiosmtpd) that records what it accepted and
can answer with temporary (4xx) or permanent (5xx) failures for chosen recipients.

    python -m tests.support.smtp_sink --port 2525      (a counting sink in its own process)
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Accepted:
    mail_from: str
    to: str
    message_id: str
    subject: str
    raw: bytes
    received_at: float = 0.0
    """time.monotonic() when the sink accepted the message (to measure the sender's pace)."""


@dataclass
class SinkHandler:
    """Accepts everything except recipients told to fail: `fail_times[addr] = (code, n)`."""

    accepted: list[Accepted] = field(default_factory=list)
    fail_times: dict[str, tuple[int, int]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    keep_raw: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        rule = self.fail_times.get(address.lower())
        if rule is not None:
            code, times = rule
            with self.lock:
                if code >= 500 or self.refused[address.lower()] < times:
                    self.refused[address.lower()] += 1
                    return f"{code} {'Mailbox unavailable' if code >= 500 else 'Try again later'}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        headers = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0], policy=email.policy.default)
        with self.lock:
            for to in envelope.rcpt_tos:
                self.accepted.append(
                    Accepted(
                        mail_from=str(envelope.mail_from),
                        to=str(to).lower(),
                        message_id=str(headers.get("Message-ID", "")),
                        subject=str(headers.get("Subject", "")),
                        raw=raw if self.keep_raw else b"",
                        received_at=time.monotonic(),
                    )
                )
        return "250 Accepted"

    def to(self, address: str) -> list[Accepted]:
        with self.lock:
            return [mail for mail in self.accepted if mail.to == address.lower()]


class SmtpSink:
    """An in-process SMTP server on 127.0.0.1 (its own thread and event loop)."""

    def __init__(self, port: int, *, keep_raw: bool = True) -> None:
        self.handler = SinkHandler(keep_raw=keep_raw)
        self.port = port
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=port, ready_timeout=10)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()


async def _serve(port: int) -> None:
    sink = SmtpSink(port, keep_raw=False)
    with sink:
        print(f"smtp sink listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=2525)
    asyncio.run(_serve(parser.parse_args().port))
