#!/usr/bin/env bash
# Install the system Chromium that the browser tests (pytest -m browser) drive through
# Playwright. Idempotent: does nothing when /usr/bin/chromium is already there.
# We never run `playwright install`: it downloads a browser build from the network,
# while the Debian package is one apt-get away and shared with everything else.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "chromium: $CHROMIUM already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium: $CHROMIUM is missing and apt-get is not available." >&2
  echo "Install Chromium with your system's package manager so that $CHROMIUM exists," >&2
  echo "or run the tests without the browser ones: pytest -m 'not browser'." >&2
  exit 1
fi

# apt-get needs root; use sudo when we are not root and it is there.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "chromium: installing needs root; run as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
  fi
fi

echo "chromium: installing the Debian package (about 40 s)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: apt-get finished but $CHROMIUM is still missing; check the package name for your distribution." >&2
  exit 1
fi
echo "chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
