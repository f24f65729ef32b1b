"""Coaching: the coach's dashboard projection, built only from events."""
