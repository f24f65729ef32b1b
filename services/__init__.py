"""The four Meer contact services. None of them imports another."""
