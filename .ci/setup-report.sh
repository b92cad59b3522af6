#!/usr/bin/env bash
# Headless Chromium for the compliance report's browser test (tests/e2e/test_report_chromium.py).
# Idempotent; assumes `apt-get update` ran (.ci/install does it first).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
