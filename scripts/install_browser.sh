#!/usr/bin/env bash
# Install Debian's chromium for the app's browser test (tests/app/test_browser.py) and
# scripts/screenshots.py. Playwright drives it through its executable path: Playwright's own browser
# downloads are impossible here. Idempotent; run as root (CI) or with sudo available.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || command -v chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "installed $(chromium --version 2>/dev/null || command -v chromium)"
