#!/usr/bin/env bash
# Augur's front door. On first use it installs everything (see infra/bootstrap.sh), then:
#   ./augur.sh demo        run the whole pipeline here and show anomalies as they are detected
#   ./augur.sh test        run the test suite (what CI runs)
#   ./augur.sh ARGS...     any `augur` subcommand, e.g. ./augur.sh infra status
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/infra/bootstrap.sh"
cd "$ROOT"
if [ "${1:-}" = "test" ]; then
  shift
  exec "$ROOT/.venv/bin/python" -m pytest "$@"
fi
exec "$ROOT/.venv/bin/augur" "$@"
