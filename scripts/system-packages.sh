#!/usr/bin/env bash
# Installs the Debian packages the portal, the agent and the tests need, when missing.
# Usage: scripts/system-packages.sh [run|test]
set -euo pipefail
want=(libsane1 sane-utils libsane-dev fonts-wqy-microhei libzbar0)
if [[ "${1:-run}" == "test" ]]; then
  want+=(chromium poppler-utils postgresql openssl)
fi
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
