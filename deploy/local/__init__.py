"""The local stack: Kafka, PostgreSQL, the SMTP catcher and the services on this machine."""
