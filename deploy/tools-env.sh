# Sourced by install-tools.sh and check.sh: which Python environment holds the tools.
# $PYTHON if set, else the active virtualenv, else the repository's .venv, else python3.
# shellcheck shell=bash
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$DEPLOY_DIR")
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
    PYTHON="$REPO_DIR/.venv/bin/python"
  else
    PYTHON=$(command -v python3)
  fi
fi
# Console scripts (hadolint, actionlint, ...) land in this environment's scripts folder.
TOOLS_BIN=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$TOOLS_BIN:$PATH"
export PYTHON DEPLOY_DIR REPO_DIR TOOLS_BIN
