#!/usr/bin/env bash
# Makes sure Debian's chromium and its chromedriver are installed (the console's browser tests drive them through
# Selenium at /usr/bin/chromedriver, so nothing is downloaded at run time).
set -euo pipefail
bash "$(dirname "$0")/need.sh" chromedriver chromium chromium-driver
echo "==> $(chromium --version 2>/dev/null || true) / $(chromedriver --version 2>/dev/null | head -1)"
