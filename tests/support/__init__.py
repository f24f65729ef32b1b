"""Test support: a programmable SMTP sink and helpers for fresh service databases."""
