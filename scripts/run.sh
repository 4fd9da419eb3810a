#!/usr/bin/env bash
# Install if needed, then start the tile server and the Streamlit app on the bundled demo data
# (FLAIR_VIZ_CATALOG=my.toml for your own catalog).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
PORT=${FLAIR_VIZ_APP_PORT:-8501}
export FLAIR_VIZ_TILE_PORT=${FLAIR_VIZ_TILE_PORT:-8765}
echo "FLAIR Viz: open http://127.0.0.1:$PORT  (tile server on http://127.0.0.1:$FLAIR_VIZ_TILE_PORT)"
exec .venv/bin/python -m ui.launch --server.address 127.0.0.1 --server.port "$PORT" \
  --server.enableStaticServing true --server.headless true --browser.gatherUsageStats false
