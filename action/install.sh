#!/usr/bin/env bash
# Step 1 of the action: install pushmanifest into a virtual environment of its own.
#
# A venv, not `pip install --user`: runner images and self-hosted machines may have an
# externally-managed Python (PEP 668) that refuses both, and the job's own packages stay apart.
# In: INPUT_PACKAGE (default: the action's checkout, $GITHUB_ACTION_PATH/..), INPUT_PYTHON,
# RUNNER_TEMP, GITHUB_OUTPUT. Out: python=<the venv's python> in $GITHUB_OUTPUT.
set -euo pipefail

python="${INPUT_PYTHON:-python3}"
package="${INPUT_PACKAGE:-}"
if [ -z "$package" ]; then
  package="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}/.."
fi
venv="${RUNNER_TEMP:?RUNNER_TEMP is not set}/pushmanifest-venv"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "::error title=pushmanifest::no '$python' on this runner: use actions/setup-python first, or set the python input"
  exit 1
fi
if ! "$python" -m venv --clear "$venv"; then
  echo "::error title=pushmanifest::'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv), or use actions/setup-python"
  exit 1
fi
venv_python="$venv/bin/python"
[ -x "$venv_python" ] || venv_python="$venv/Scripts/python.exe"  # Windows runners

"$venv_python" -m pip install --quiet --disable-pip-version-check --no-input "$package"
"$venv_python" -m pushmanifest --version
echo "python=$venv_python" >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
