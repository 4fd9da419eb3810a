#!/usr/bin/env bash
# Install FLAIR Viz into ./.venv (idempotent): pinned Python packages, the package itself,
# and Leaflet + plugins from the npm registry into static/vendor/ so the map needs no CDN.
# Usage: scripts/install.sh [--test]   (--test also installs test tools and Debian chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"FLAIR Viz needs Python 3.11, found {sys.version}"'

REQ=requirements.txt
[ "${1:-}" = "--test" ] && REQ=requirements-test.txt
HASH=$(cat requirements.txt requirements-test.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP=".venv/.installed-$HASH-$(basename $REQ .txt)"
# A test install includes the runtime one.
if [ ! -f "$STAMP" ] && [ ! -f ".venv/.installed-$HASH-requirements-test" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  echo "Installing Python packages from $REQ (torch is large: first run takes a few minutes)..."
  .venv/bin/pip install -q -r "$REQ"
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-*; touch "$STAMP"
fi

# Leaflet and plugins, served locally by Streamlit from static/vendor/ (offline at run time), and
# world-atlas (Natural Earth 1:10m countries, public domain; ISC) for the Overview's outline of France.
VENDOR=static/vendor
declare -A NPM=( [leaflet]=1.9.4 [leaflet-side-by-side]=2.2.0 [leaflet-draw]=1.0.4 [world-atlas]=2.0.2 )
for pkg in "${!NPM[@]}"; do
  ver=${NPM[$pkg]}
  if [ ! -f "$VENDOR/$pkg/.version-$ver" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null && tar xzf ./*.tgz)
    rm -rf "$VENDOR/$pkg"; mkdir -p "$VENDOR/$pkg"
    if [ -d "$tmp/package/dist" ]; then cp -r "$tmp/package/dist/." "$VENDOR/$pkg/"; fi
    cp "$tmp"/package/*.js "$tmp"/package/*.css "$VENDOR/$pkg/" 2>/dev/null || true
    cp "$tmp"/package/*.png "$tmp"/package/LICENSE* "$VENDOR/$pkg/" 2>/dev/null || true
    if [ "$pkg" = world-atlas ]; then cp "$tmp/package/countries-10m.json" "$VENDOR/$pkg/"; fi
    if [ "$pkg" = leaflet-side-by-side ]; then
      # The npm package is CommonJS source: make a browser script that uses the global L.
      (echo "(function(){"; sed -e "s/^var L = require('leaflet')/var L = window.L/" -e "/^require('.\/.*\.css')/d" \
         -e "s/^module.exports = .*//" "$tmp/package/index.js"; echo "})();") > "$VENDOR/$pkg/leaflet-side-by-side.js"
      cat "$tmp/package/layout.css" "$tmp/package/range.css" > "$VENDOR/$pkg/leaflet-side-by-side.css"
    fi
    touch "$VENDOR/$pkg/.version-$ver"; rm -rf "$tmp"
  fi
done

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium -o ! -x /usr/bin/chromedriver ]; then
  echo "Installing Debian chromium + chromium-driver for the browser tests..."
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "FLAIR Viz installed in $ROOT/.venv"
