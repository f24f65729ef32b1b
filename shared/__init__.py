"""What every Meer contact service must agree on: event contracts, settings, and the
database, Kafka, outbox, metrics and logging plumbing. No business rule lives here."""
