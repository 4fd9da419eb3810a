#!/usr/bin/env bash
# Install everything the tests need (Python packages, Leaflet assets, Debian chromium), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
export FLAIR_VIZ_ARTIFACTS=${FLAIR_VIZ_ARTIFACTS:-artifacts}
exec .venv/bin/python -m pytest -q "$@"
