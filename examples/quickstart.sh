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
if ! python3 -c "import pushmanifest, httpx, yaml, pydantic" 2>/dev/null; then
  echo "quickstart: installing pushmanifest from this clone" >&2
  python3 -m pip install -q -e .
fi
exec python3 examples/quickstart.py "$@"
