"""How the browser tests start Debian's Chromium: one place for the binary, the flags and where
screenshots go.

The flags keep a headless Chromium quiet on a machine without internet (no background
networking, no component updates, no first-run work); Playwright gives each launch a fresh
profile of its own."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.local.stack import VAR

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("MEER_SCREENSHOTS", VAR / "screenshots"))
"""Where screenshots are kept to be looked at (MEER_SCREENSHOTS, else the stack's var folder)."""
WAIT_MS = 30_000
"""How long one browser step may take before the test fails."""
