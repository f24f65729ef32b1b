"""The local mail catcher keeps what it caught on disk: after a restart it lists the same mails,
with their sender, recipients and raw text."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import stack
from deploy.local.mailcatcher import Mailbox


def test_a_restarted_catcher_lists_the_mails_it_kept(tmp_path: Path) -> None:
    before = Mailbox(tmp_path)
    for n in range(3):
        raw = f"Subject: Dag {n + 1} van 60\r\nTo: deelnemer{n}@example.org\r\n\r\nGoedemorgen!\r\n".encode()
        before.add("training@meercontact.local", [f"deelnemer{n}@example.org", "kopie@example.org"], raw)

    after = Mailbox(tmp_path)

    assert [m.id for m in after.mails] == [1, 2, 3]
    assert [m.rcpt_tos for m in after.mails] == [[f"deelnemer{n}@example.org", "kopie@example.org"] for n in range(3)]
    assert {m.mail_from for m in after.mails} == {"training@meercontact.local"}
    assert after.mails[1].parsed["Subject"] == "Dag 2 van 60"
    assert after.mails[2].parsed.get_content().strip() == "Goedemorgen!"
    assert after.add("training@meercontact.local", ["nieuw@example.org"], b"Subject: x\r\n\r\ny\r\n").id == 4


def test_up_waits_for_a_catcher_still_reading_its_mails_instead_of_starting_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After benchmarks a catcher reads its stored mails for longer than `./meer up` waits; the
    # next `./meer up` finds it alive with its ports not open yet.
    started: list[str] = []
    waited: list[str] = []
    monkeypatch.setattr(stack, "running_pid", lambda name: 4242)
    monkeypatch.setattr(stack, "port_open", lambda port, host=stack.HOST: False)
    monkeypatch.setattr(stack, "start_process", lambda name, argv, env=None: started.append(name) or 1)
    monkeypatch.setattr(stack, "wait_until", lambda what, check, timeout, log_name: waited.append(log_name))

    stack.start_mailcatcher()

    assert started == [] and waited == ["mailcatcher"]

    monkeypatch.setattr(stack, "running_pid", lambda name: None)
    stack.start_mailcatcher()
    assert started == ["mailcatcher"], "none running: one is started"
