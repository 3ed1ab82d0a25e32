#!/usr/bin/env bash
# Starts or stops a real S3-compatible server (moto) on loopback for the tests.
set -euo pipefail
VENV=${VENV:-.venv}
PORT=${S3_PORT:-9000}
PIDFILE=${TMPDIR:-/tmp}/wxcube-moto-$PORT.pid
case "${1:-}" in
  start)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then exit 0; fi
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"${TMPDIR:-/tmp}/wxcube-moto-$PORT.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
      if "$VENV/bin/python" - "$PORT" <<'PY' 2>/dev/null; then exit 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
PY
      sleep 0.2
    done
    echo "moto did not start on 127.0.0.1:$PORT" >&2; exit 1 ;;
  stop)
    if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
