"""Enrolment: licensed organisations, their coaches, and every participant's journey."""
