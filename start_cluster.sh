#!/usr/bin/env bash
# Starts, stops and reports on a local 3-node strata cluster (seed 000's layout):
# node-1..node-3 on 127.0.0.1:9001..9003, data in data/node-N, logs in data/node-N.log,
# each node's PID in data/node-N.pid. Stopping signals exactly those PIDs.
#
#   ./start_cluster.sh start     build once (release), start the three nodes
#   ./start_cluster.sh status    each node's /raft/status
#   ./start_cluster.sh stop      SIGTERM each node by its PID file and wait for it
#
# Environment: NODES (default 3), BASE_PORT (default 9001), DATA (default data),
# EXTRA_ARGS (passed to every node).
set -euo pipefail

NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-9001}
DATA=${DATA:-data}
BIN=target/release/examples/server

cd "$(dirname "$0")"

peers_of() {
    local me=$1 list="" i
    for i in $(seq 1 "$NODES"); do
        [ "$i" = "$me" ] && continue
        list="${list:+$list,}node-$i:127.0.0.1:$((BASE_PORT + i - 1))"
    done
    echo "$list"
}

running() {
    local pidfile=$1
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
    cargo build --release --features replication --example server
    mkdir -p "$DATA"
    local i
    for i in $(seq 1 "$NODES"); do
        local pidfile="$DATA/node-$i.pid"
        if running "$pidfile"; then
            echo "node-$i already running (pid $(cat "$pidfile"))"
            continue
        fi
        # shellcheck disable=SC2086
        "$BIN" --node-id "node-$i" --host 127.0.0.1 --port $((BASE_PORT + i - 1)) \
            --data-dir "$DATA/node-$i" --peers "$(peers_of "$i")" ${EXTRA_ARGS:-} \
            >>"$DATA/node-$i.log" 2>&1 &
        echo $! >"$pidfile"
        echo "node-$i started on 127.0.0.1:$((BASE_PORT + i - 1)) (pid $!)"
    done
}

stop() {
    local i
    for i in $(seq 1 "$NODES"); do
        local pidfile="$DATA/node-$i.pid"
        if ! running "$pidfile"; then
            rm -f "$pidfile"
            continue
        fi
        local pid
        pid=$(cat "$pidfile")
        kill -TERM "$pid"
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "node-$i (pid $pid) did not stop in 15 s; sending SIGKILL"
            kill -KILL "$pid"
        fi
        rm -f "$pidfile"
        echo "node-$i stopped"
    done
}

status() {
    local i
    for i in $(seq 1 "$NODES"); do
        local port=$((BASE_PORT + i - 1))
        printf 'node-%s  ' "$i"
        curl -s --max-time 2 "http://127.0.0.1:$port/raft/status" || printf 'unreachable'
        echo
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
