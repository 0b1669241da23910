#!/usr/bin/env bash
# Verifies every deploy recipe offline, one line per check: "PASS name" or "FAIL name"
# followed by the tool's output. Exits 1 if any check failed (a missing tool is a FAIL).
# Tools: bash deploy/install-tools.sh. Usage: bash deploy/check.sh
set -euo pipefail
# shellcheck source=deploy/tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools-env.sh"
cd "$REPO_DIR"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
checks=0

# check NAME DESCRIPTION COMMAND...: runs COMMAND, PASS if it exits 0.
check() {
  local name=$1 what=$2
  shift 2
  checks=$((checks + 1))
  if "$@" >"$work/out" 2>&1; then
    echo "PASS $name: $what"
    [[ "$name" != systemd-security ]] || sed 's/^/    /' "$work/out"
  else
    echo "FAIL $name: $what"
    sed 's/^/    /' "$work/out"
    failed=$((failed + 1))
  fi
}

# The same, but any output also fails (tools that only warn about unknown keys).
quiet() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
  [[ -z "$out" ]] || { printf '%s\n' "$out"; return 1; }
}

# systemd-analyze wants ExecStart= binaries to exist: it works inside a scratch root
# holding the system's own units, the recipe's units and a stand-in digest executable,
# so nothing on this machine changes.
systemd_root() {
  local root="$work/root"
  if [[ ! -d "$root" ]]; then
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/opt/digest/venv/bin"
    cp -a /lib/systemd/system "$root/usr/lib/systemd/"
    printf '#!/bin/sh\nexit 0\n' >"$root/opt/digest/venv/bin/digest"
    chmod +x "$root/opt/digest/venv/bin/digest"
    cp deploy/systemd/*.service deploy/systemd/*.timer "$root/etc/systemd/system/"
  fi
  echo "$root"
}

systemd_verify() {
  local root
  root=$(systemd_root)
  (cd "$root/etc/systemd/system" &&
    quiet systemd-analyze verify --root="$root" --man=no \
      digest.service digest-run.service digest-run.timer)
}

# Exposure score of the sandbox, 0 (locked down) to 10 (none); fail above 2.5.
systemd_security() {
  local root
  root=$(systemd_root)
  (cd "$root/etc/systemd/system" &&
    systemd-analyze security --offline=true --root="$root" --threshold=25 --no-pager \
      digest.service digest-run.service | grep -F "Overall exposure level")
}

shellcheck_cron() {
  # The env file is the operator's, not in this repository: nothing to follow.
  echo "# shellcheck source=/dev/null" >"$work/cron.sh"
  "$PYTHON" -c 'import sys; sys.path.insert(0, "deploy"); import verify
print(verify.crontab_command(verify.DEPLOY / "cron" / "crontab"))' >>"$work/cron.sh"
  shellcheck --shell=sh "$work/cron.sh"
}

check shellcheck "deploy/*.sh" shellcheck --shell=bash --external-sources deploy/*.sh
check crontab "deploy/cron/crontab: fields, calls digest run" "$PYTHON" deploy/verify.py crontab
check crontab-shell "deploy/cron/crontab command (shellcheck -s sh)" shellcheck_cron
check systemd "systemd-analyze verify digest.service digest-run.service digest-run.timer" \
  systemd_verify
check systemd-security "systemd-analyze security: exposure at most 2.5 of 10" \
  systemd_security
check hadolint "deploy/docker/Dockerfile" hadolint deploy/docker/Dockerfile
check compose "deploy/docker/compose.yaml vs deploy/schemas/compose-spec.json" \
  check-jsonschema --schemafile deploy/schemas/compose-spec.json deploy/docker/compose.yaml
check compose-postgres "deploy/docker/compose.postgres.yaml vs deploy/schemas/compose-spec.json" \
  check-jsonschema --schemafile deploy/schemas/compose-spec.json \
  deploy/docker/compose.postgres.yaml
for k8s in 1.27.0 1.37.0; do
  check "k8s-$k8s" "deploy/k8s/*.yaml, strict Kubernetes $k8s schemas" \
    quiet kubernetes-validate --strict --quiet -k "$k8s" deploy/k8s/*.yaml
done
check actionlint ".github/workflows/digest.yml (with shellcheck)" \
  actionlint .github/workflows/digest.yml
check workflow-schema ".github/workflows/digest.yml vs the GitHub workflow schema" \
  check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/digest.yml
check configs "example configs load with digest.config" "$PYTHON" deploy/verify.py configs
check wiring "secrets, config mounts, store volumes, ports match across recipes" \
  "$PYTHON" deploy/verify.py wiring
check cli "every digest command line in the recipes parses with digest's CLI" \
  "$PYTHON" deploy/verify.py cli

echo "$((checks - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
