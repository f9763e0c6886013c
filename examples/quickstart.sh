#!/usr/bin/env bash
# Quickstart: a real local registry, four tiny images, one real push of their multi-arch list.
# Installs what is missing (the CNCF registry from Debian, pushmanifest from this clone).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "quickstart: installing docker-registry (the CNCF distribution registry)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
  else
    echo "quickstart: needs docker-registry: sudo apt-get install docker-registry" >&2
    exit 1
  fi
fi
# pushmanifest goes into a virtual environment of the clone's own (.venv): a system Python is
# often externally managed (Debian 12, Ubuntu 24.04) and refuses pip install outside one.
python=python3
if ! python3 -c "import pushmanifest, httpx, yaml, pydantic" 2>/dev/null; then
  python=.venv/bin/python
  if ! "$python" -c "import pushmanifest, httpx, yaml, pydantic" 2>/dev/null; then
    echo "quickstart: installing pushmanifest from this clone into .venv" >&2
    python3 -m venv .venv
    "$python" -m pip install -q -e .
  fi
fi
exec "$python" examples/quickstart.py "$@"
