#!/usr/bin/env bash
# Starts or stops a real S3-compatible server (moto) on loopback for the tests.
# `start` is a no-op if our server on that port is already up; it fails if the port is
# taken by anything else (so tests never talk to, or later stop, someone else's server).
set -euo pipefail
VENV=${VENV:-.venv}
PORT=${S3_PORT:-9000}
PIDFILE=${TMPDIR:-/tmp}/wxcube-moto-$PORT.pid
LOG=${TMPDIR:-/tmp}/wxcube-moto-$PORT.log
up() {
  "$VENV/bin/python" - "$PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
PY
}
case "${1:-}" in
  start)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then exit 0; fi
    if up; then echo "127.0.0.1:$PORT is already in use by another server" >&2; exit 1; fi
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PIDFILE"; echo "moto exited on 127.0.0.1:$PORT (log: $LOG)" >&2; exit 1
      fi
      if up; then exit 0; fi
      sleep 0.2
    done
    echo "moto did not start on 127.0.0.1:$PORT (log: $LOG)" >&2; exit 1 ;;
  stop)
    if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
