"""Mailer: the daily programme mail, scheduled, rendered, sent once, and accounted for."""
