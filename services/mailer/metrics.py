"""The mailer's Prometheus metrics (labels: kinds and reasons, never people)."""

from prometheus_client import Counter, Gauge, Histogram

MAILS = Counter(
    "meer_mailer_mails_total",
    "Mails by kind (programme or a transactional kind) and outcome (sent, failed, retried).",
    ["kind", "outcome", "reason"],
)
SMTP_SECONDS = Histogram(
    "meer_mailer_smtp_seconds",
    "Time for the SMTP server to accept one mail.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DUE_BACKLOG = Gauge("meer_mailer_due_backlog", "Programme mails that are due and not sent yet.")
OLDEST_DUE_SECONDS = Gauge(
    "meer_mailer_oldest_due_seconds",
    "Age of the oldest unsent programme mail, since it first fell due (postponements do not reset it).",
)
