"""Enrolment's use cases, shared by the API, the pages, the CLI and the Kafka handlers: one
module per area (organisations, staff_accounts, participants, signups, csv_import).

Each one applies the domain rules, changes rows and stages its event in the caller's
session; the caller commits once, so a state change and its event commit together or
not at all. Rules that refuse raise shared.errors.Refusal (kind, message, field).
"""
