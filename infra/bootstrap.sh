#!/usr/bin/env bash
# Set up everything Augur needs on a fresh machine, idempotently: system packages (Java 17+, Maven) when missing,
# the Python virtualenv with pinned dependencies, and the Maven jars (Kafka broker, Flink connectors).
# Called by ./augur.sh before every command; it does nothing when all is in place.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${AUGUR_PYTHON:-python3.11}"
STAMP="$VENV/.augur-installed"
# optional dependency groups (pyproject extras) this command needs; ./augur.sh picks them per command
EXTRAS="${AUGUR_EXTRAS:-}"

log() { echo "augur bootstrap: $*" >&2; }

need_apt=()
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)  # a JDK: jvm/ is compiled here
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v "$PYTHON" >/dev/null 2>&1 || { command -v python3 >/dev/null 2>&1 && PYTHON=python3; } || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing system packages: ${need_apt[*]}; install them (e.g. sudo apt-get install ${need_apt[*]}) and rerun"
    exit 1
  fi
  log "installing system packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# eBPF collectors (bcc from Debian) and the overhead benchmark's workload (nginx, wrk): installed when running as
# root on a Debian-like host
EBPF_PACKAGES=(bpfcc-tools python3-bpfcc linux-headers-amd64 nginx-light wrk)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${AUGUR_SKIP_EBPF:-}" != 1 ] \
   && ! dpkg -s "${EBPF_PACKAGES[@]}" >/dev/null 2>&1; then
  log "installing eBPF prerequisites and benchmark tools: ${EBPF_PACKAGES[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${EBPF_PACKAGES[@]}" >/dev/null \
    || log "eBPF prerequisites could not be installed; collectors will report why"
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  log "Augur needs Python 3.11 ($PYTHON is $("$PYTHON" --version 2>&1)); set AUGUR_PYTHON to a 3.11 interpreter"
  exit 1
}

# The stamp records the dependency files' hash and the extras installed with them; reinstall when the files
# changed or an extra this command needs is missing.
want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)"
read -r have_hash have_extras 2>/dev/null < "$STAMP" || true
missing=""
for extra in ${EXTRAS//,/ }; do
  case ",${have_extras:-}," in *",$extra,"*) ;; *) missing="$missing $extra" ;; esac
done
if [ ! -x "$VENV/bin/python" ] || [ "${have_hash:-}" != "$want" ] || [ -n "$missing" ]; then
  [ "${have_hash:-}" = "$want" ] || have_extras=""
  all="$(echo "${have_extras:-},$EXTRAS" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
  log "installing the Python environment in .venv with extras [${all}] (the first run takes a few minutes;" \
      "the train extra's torch wheel is large)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel >/dev/null
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT${all:+[$all]}"
  echo "$want $all" > "$STAMP"
fi

# Kafka broker runtime and Flink connector jars from Maven Central (skipped when already fetched)
"$VENV/bin/python" -c 'from infra import maven; maven.fetch_all()' || {
  log "fetching jars from Maven Central failed (see above)"; exit 1; }
