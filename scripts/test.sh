#!/usr/bin/env bash
# The whole test suite: what `make test` runs (and CI, through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
CARGO=${CARGO:-cargo}
export S3_PORT=${S3_PORT:-9000}

bash scripts/s3.sh start
trap 'bash scripts/s3.sh stop' EXIT

# Credentials for the loopback moto server only.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true
export WXCUBE_TEST_S3=1 WXCUBE_TEST_PYTHON="$PWD/$VENV/bin/python"
[ -x "$WXCUBE_TEST_PYTHON" ] || WXCUBE_TEST_PYTHON="$VENV/bin/python"

$CARGO test --all-targets -- --test-threads=2
