#!/usr/bin/env bash
# Step 2 of the action: push, with the venv's python (see run.py for the inputs).
set -euo pipefail
exec "${PUSHMANIFEST_PYTHON:?the install step gives PUSHMANIFEST_PYTHON}" "$GITHUB_ACTION_PATH/run.py"
