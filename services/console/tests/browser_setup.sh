#!/usr/bin/env bash
# Installs what the console's browser test needs: Debian's chromium at /usr/bin/chromium (the
# Playwright Python package drives it with executable_path; no Playwright browser download).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(command -v chromium)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
command -v chromium
