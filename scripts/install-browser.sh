#!/usr/bin/env bash
# Install the browser the UI test (tests/system/test_ui_browser.py) drives: Debian's chromium, if missing.
# Playwright's own browser downloads are not used (they need a host other than the package
# registries); Playwright drives this system chromium. Python packages come from uv.lock, not here.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo "$(command -v chromium)")"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install chromium with your system's package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"  # never prompt: without passwordless sudo, say so and let the UI test skip
    if ! $SUDO true 2>/dev/null; then
        echo "install-browser: not root and no passwordless sudo; run 'sudo apt-get install chromium' yourself" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
echo "installed: $(chromium --version 2>/dev/null)"
