#!/usr/bin/env bash
# Set-up and entry points that work on a fresh machine: creates .venv when missing, installs the project.
#   bash scripts/dev.sh run [DATASET ...]   materialize the whole chain on data/ (lightly-assets run)
#   bash scripts/dev.sh test [ARGS]         run the test suite (pytest ARGS; -m "not e2e" for the quick part)
#   bash scripts/dev.sh check               `dg check defs`: the definitions load and validate
#   bash scripts/dev.sh ui                  start `dg dev` (Dagster's UI and daemon) on 127.0.0.1:3000
#   bash scripts/dev.sh docs                build the documentation site strictly (mkdocs build --strict; docs extra)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
export LIGHTLY_STUDIO_ANALYTICS_ENABLED=false

setup() {
  # $1: the extras to install (default test); `test` adds ray and docs, so the Ray tests and the site build run in CI too.
  extras=${1:-test}
  if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
  stamp=.venv/.lightly-assets-installed
  hash=$(sha256sum < pyproject.toml | cut -c1-16)
  read -r have_hash have_extras 2>/dev/null < "$stamp" || true
  missing=0
  for e in ${extras//,/ }; do [[ ",${have_extras:-}," == *",$e,"* ]] || missing=1; done
  if [ "${have_hash:-}" != "$hash" ] || [ "$missing" = 1 ]; then
    .venv/bin/pip install --disable-pip-version-check -q -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import lightly_assets, torch, lightly, dagster" # fail loudly if the install failed
    echo "$hash $extras" > "$stamp"
  fi
}

browser() {
  # Headless Chromium from Debian for the UI test; a browser download by a test tool would fail here.
  if ! command -v chromium >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || { echo "error: could not install Debian's chromium, needed by the UI test" >&2; exit 1; }
  fi
}

ui() {
  export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"; mkdir -p "$DAGSTER_HOME"
  # dg compares the active virtual environment ($VIRTUAL_ENV) with .venv and warns (twice) when they differ:
  # activate .venv, which is the one it runs from.
  export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
  # A background job of a non-interactive shell (`bash scripts/dev.sh ui &`) starts with SIGINT ignored, and bash
  # cannot restore it: Ctrl+C or `kill -INT` would then leave dg dev and its servers running. Python restores the
  # default before it becomes dg, whose servers then stop on SIGINT as they do in a terminal.
  exec .venv/bin/python -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    .venv/bin/dg dev -h 127.0.0.1 -p "${PORT:-3000}"
}

cmd=${1:-run}; shift || true
case "$cmd" in
  run)  setup; exec .venv/bin/lightly-assets run "$@" ;;
  # docs: the strict site build is a test too. Bytecode is cached (__pycache__, ignored by git) even where the
  # environment turns it off (PYTHONDONTWRITEBYTECODE): each xdist worker and each process a test starts would
  # otherwise compile the package and the rewritten test modules again, ~3 s of the quick loop's wall time.
  test) setup test,ray,docs; browser; unset PYTHONDONTWRITEBYTECODE; exec .venv/bin/python -m pytest "$@" ;;
  check) setup; VIRTUAL_ENV="$PWD/.venv" exec .venv/bin/dg check defs ;;  # the venv dg expects: no mismatch warning
  ui)   setup; ui ;;
  docs) setup docs; out=$(mktemp -d); trap 'rm -rf "$out"' EXIT  # the reference pages are generated from the code
        NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -d "$out" ;;
  *)    echo "usage: bash scripts/dev.sh run|test|check|ui|docs" >&2; exit 2 ;;
esac
