"""The local mail catcher keeps what it caught on disk: after a restart it lists the same mails,
with their sender, recipients and raw text."""

from __future__ import annotations

from pathlib import Path

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
