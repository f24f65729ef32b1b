"""Tracking: opens and clicks of the programme mails, recorded from signed tokens."""
