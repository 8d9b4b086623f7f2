#!/usr/bin/env bash
# Augur's front door. On first use it installs everything (see infra/bootstrap.sh), then:
#   ./augur.sh demo        run the whole pipeline here and show anomalies as they are detected
#   ./augur.sh test        run the test suite (what CI runs)
#   ./augur.sh ARGS...     any `augur` subcommand, e.g. ./augur.sh infra status
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# extras: the tests need everything; the demo only the core; other commands may train models (detect, train)
# or compare with other libraries (bench)
case "${1:-}" in
  test) export AUGUR_EXTRAS="test,train,bench" ;;
  demo|infra|synth|collect|record|replay|stream|backfill|tail|act) export AUGUR_EXTRAS="" ;;
  *) export AUGUR_EXTRAS="train,bench" ;;
esac
"$ROOT/infra/bootstrap.sh"
cd "$ROOT"
if [ "${1:-}" = "test" ]; then
  shift
  exec "$ROOT/.venv/bin/python" -m pytest "$@"
fi
exec "$ROOT/.venv/bin/augur" "$@"
