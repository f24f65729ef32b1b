"""A development SMTP catcher: accepts every mail, keeps it, and shows it on a web page.

    python deploy/local/mailcatcher.py --smtp-port 1025 --http-port 8025

Web:  /                   the received mails, newest first
      /messages/<id>      one mail as the participant sees it (HTML and plain text)
API:  GET /api/messages[?to=ADDRESS]   JSON summaries
      GET /api/messages/<id>/raw       the message as received (RFC 5322)
      DELETE /api/messages             forget everything
Mails are also written to var/mail/<id>.eml so a restart keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import html
import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

MAIL_DIR = Path(os.environ.get("MEER_VAR_DIR", Path(__file__).resolve().parents[2] / "var")) / "mail"


@dataclass
class CaughtMail:
    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def summary(self) -> dict[str, Any]:
        message = self.parsed
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "from": self.mail_from,
            "to": self.rcpt_tos,
            "subject": str(message.get("Subject", "")),
            "message_id": str(message.get("Message-ID", "")),
        }


class Mailbox:
    """Every mail received, in memory and on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mails: list[CaughtMail] = []
        directory.mkdir(parents=True, exist_ok=True)
        # Only the headers, with the plain compat32 policy: after a morning-burst benchmark the
        # folder holds 10,000 mails, and parsing each whole took the restart past its 20 s.
        headers = BytesHeaderParser()
        for path in sorted(directory.glob("*.eml"), key=lambda p: int(p.stem)):
            raw = path.read_bytes()
            message = headers.parsebytes(raw)
            self.mails.append(
                CaughtMail(
                    id=int(path.stem),
                    received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
                    mail_from=str(message.get("X-Catcher-Mail-From", "")),
                    rcpt_tos=str(message.get("X-Catcher-Rcpt-To", "")).split(","),
                    raw=raw,
                )
            )
        self._ids = itertools.count(max((m.id for m in self.mails), default=0) + 1)

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CaughtMail:
        mail = CaughtMail(next(self._ids), datetime.now(UTC), mail_from, rcpt_tos, raw)
        header = f"X-Catcher-Mail-From: {mail_from}\r\nX-Catcher-Rcpt-To: {','.join(rcpt_tos)}\r\n".encode()
        (self.directory / f"{mail.id}.eml").write_bytes(header + raw)
        self.mails.append(mail)
        return mail

    def clear(self) -> None:
        for path in self.directory.glob("*.eml"):
            path.unlink()
        self.mails.clear()


class CatchAll:
    """aiosmtpd handler that accepts and stores every message."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        self.mailbox.add(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], raw)
        return "250 Message accepted for delivery"


def create_web_app(mailbox: Mailbox) -> FastAPI:
    app = FastAPI(title="Meer contact mail catcher")

    def find(mail_id: int) -> CaughtMail:
        for mail in mailbox.mails:
            if mail.id == mail_id:
                return mail
        raise HTTPException(status_code=404, detail=f"no mail with id {mail_id}")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/messages")
    async def list_messages(to: str | None = None) -> list[dict[str, Any]]:
        mails = [m for m in mailbox.mails if to is None or to.lower() in (r.lower() for r in m.rcpt_tos)]
        return [m.summary() for m in reversed(mails)]

    @app.get("/api/messages/{mail_id}/raw")
    async def raw_message(mail_id: int) -> Response:
        return Response(find(mail_id).raw, media_type="message/rfc822")

    @app.delete("/api/messages")
    async def clear_messages() -> dict[str, int]:
        count = len(mailbox.mails)
        mailbox.clear()
        return {"deleted": count}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s['received_at'][:19])}</td><td>{html.escape(', '.join(s['to']))}</td>"
            f"<td><a href='/messages/{s['id']}'>{html.escape(s['subject'])}</a></td></tr>"
            for s in (m.summary() for m in reversed(mailbox.mails[-500:]))
        )
        return _page(
            "Ontvangen mail", f"<table><tr><th>Ontvangen (UTC)</th><th>Aan</th><th>Onderwerp</th></tr>{rows}</table>"
        )

    @app.get("/messages/{mail_id}", response_class=HTMLResponse)
    async def show(mail_id: int) -> str:
        mail = find(mail_id)
        message = mail.parsed
        html_part = message.get_body(preferencelist=("html",))
        text_part = message.get_body(preferencelist=("plain",))
        headers = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in message.items()
        )
        body = (
            f"<p><a href='/'>&larr; alle mail</a> · <a href='/api/messages/{mail.id}/raw'>bron</a></p>"
            f"<table class='headers'>{headers}</table>"
        )
        if html_part is not None:
            body += (
                "<h2>HTML</h2><iframe sandbox title='HTML-versie' "
                f'srcdoc="{html.escape(html_part.get_content())}"></iframe>'
            )
        if text_part is not None:
            body += f"<h2>Tekst</h2><pre>{html.escape(text_part.get_content())}</pre>"
        return _page(str(message.get("Subject", "")), body)

    return app


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}"
        "iframe{width:100%;height:70vh;border:1px solid #ccc}pre{white-space:pre-wrap;background:#f6f6f6;padding:1rem}"
        ".headers th{width:12rem;color:#555;font-weight:normal}"
    )
    return (
        f"<!doctype html><html lang='nl'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


async def serve(smtp_port: int, http_port: int, host: str) -> None:
    mailbox = Mailbox(MAIL_DIR)
    controller = Controller(CatchAll(mailbox), hostname=host, port=smtp_port, data_size_limit=10 * 1024 * 1024)
    controller.start()
    try:
        config = uvicorn.Config(create_web_app(mailbox), host=host, port=http_port, log_level="warning")
        await uvicorn.Server(config).serve()
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(serve(args.smtp_port, args.http_port, args.host))


if __name__ == "__main__":
    main()
