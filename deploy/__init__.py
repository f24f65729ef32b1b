"""Deployment: the local stack without Docker, and the container files."""
