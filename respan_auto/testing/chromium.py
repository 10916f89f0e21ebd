"""Debian's Chromium, as the web view's tests and its page-load benchmark start it: headless, offline, no sandbox
(they run as root in containers), and nothing in the background that would reach beyond the loopback address."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
