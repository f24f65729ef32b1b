"""The sending lease must outlast a send, or a second sender repeats a mail still on its way."""

import pytest
from pydantic import ValidationError

from services.mailer.settings import MailerSettings


def test_a_lease_shorter_than_two_smtp_timeouts_is_refused() -> None:
    with pytest.raises(ValidationError, match="MEER_SENDING_LEASE_S"):
        MailerSettings(sending_lease_s=50, smtp_timeout_s=30)


def test_the_default_lease_outlasts_the_default_smtp_timeout() -> None:
    settings = MailerSettings()
    assert settings.sending_lease_s >= 2 * settings.smtp_timeout_s
