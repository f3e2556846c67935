#!/usr/bin/env bash
# bench/browser/run.sh: speedtest16 in headless Chromium, Lattice's idbvfs
# beside wa-sqlite's IDBBatchAtomicVFS and sqlite.org's opfs-sahpool (plus
# Lattice's engine on memdb, to show the engine's cost without storage).
# Needs Chromium (run ./build.sh deps once); installs its npm packages,
# builds the test wasm and prints a Markdown table. Arguments go to run.mjs:
#   bench/browser/run.sh --rounds 3
#   bench/browser/run.sh --scripts DIR   # the published benchmark1..16.sql
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "run.sh: Node.js 20+ is needed" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "run.sh: Chromium missing: run ./build.sh deps (as root) first" >&2; exit 1; }
[ -d ../../browsertest/node_modules ] || (cd ../../browsertest && npm ci --no-audit --no-fund --loglevel=error)
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
exec node run.mjs "$@"
