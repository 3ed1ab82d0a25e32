#!/usr/bin/env bash
# The whole test suite: what `make test` runs (and CI, through .ci/run).
# S3 tests run against a moto server on a free loopback port (or S3_PORT if set), which is
# stopped at the end unless it was already running.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
CARGO=${CARGO:-cargo}
if [ -z "${S3_PORT:-}" ]; then
  S3_PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
export S3_PORT

PIDFILE=${TMPDIR:-/tmp}/wxcube-moto-$S3_PORT.pid
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  bash scripts/s3.sh start
else
  bash scripts/s3.sh start
  trap 'bash scripts/s3.sh stop' EXIT
fi

# Credentials for the loopback moto server only; S3 settings from the caller's shell (another
# endpoint, a session token) must not leak into the tests.
unset AWS_ENDPOINT AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_PROFILE \
  AWS_VIRTUAL_HOSTED_STYLE_REQUEST AWS_CONDITIONAL_PUT AWS_SKIP_SIGNATURE
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true
export WXCUBE_TEST_S3=1 WXCUBE_TEST_PYTHON="$PWD/$VENV/bin/python"
[ -x "$WXCUBE_TEST_PYTHON" ] || WXCUBE_TEST_PYTHON="$VENV/bin/python"

# Airflow checks the example DAG itself (dag.test()) when a Python with Airflow is there
# (`make airflow-venv`); otherwise the test runs the DAG's commands with Airflow stubbed.
AIRFLOW_VENV=${AIRFLOW_VENV:-$HOME/.cache/airflow-venv}
if [ -x "$AIRFLOW_VENV/bin/airflow" ]; then export WXCUBE_TEST_AIRFLOW_PYTHON="$AIRFLOW_VENV/bin/python"; fi

# The shape ARCHITECTURE.md promises: no import cycle, no function over 120 lines.
python3 scripts/structure.py src
$CARGO test --lib --bins --tests -- --test-threads=2
# The benchmarks run once each as smoke tests (criterion's harness takes no test flags).
$CARGO test --benches
