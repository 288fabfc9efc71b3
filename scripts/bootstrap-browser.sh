#!/usr/bin/env bash
# The console's browser tests drive a real headless Chromium through ChromeDriver. Installs Debian's
# `chromium` and `chromium-driver` when either is missing (apt-get; sudo when not root). Prints the paths.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if ! have chromium || ! have chromedriver; then
  echo "bootstrap: installing Debian's chromium and chromium-driver (browser tests of the console)" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
echo "browser: $(command -v chromium) ($(chromium --version 2>/dev/null | head -1)); driver: $(command -v chromedriver)"
