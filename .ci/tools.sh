#!/usr/bin/env bash
# Puts the offline oracles the tests need on .tools/bin, installing from Debian's packages:
#   promtool  (package prometheus: extracted with dpkg -x, no service started)
#   kubectl   (must already be on PATH, or package kubernetes-client provides it)
#   postgres  (package postgresql: the rotation test starts its own throw-away server)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools/bin
apt_updated=0
apt_update() { [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null; apt_updated=1; }; }

if [ ! -x .tools/bin/promtool ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt_update; apt-get download prometheus >/dev/null; }; } )
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
  cp "$tmp/x/usr/bin/promtool" .tools/bin/promtool
  rm -rf "$tmp"
fi

if ! command -v kubectl >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
.tools/bin/promtool --version 2>&1 | head -1
