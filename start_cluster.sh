#!/usr/bin/env bash
# Starts, stops and reports on a local 3-node strata cluster (seed 000's layout):
# node-1..node-3 on 127.0.0.1:9001..9003, data in data/node-N, logs in data/node-N.log,
# each node's PID in data/node-N.pid. Stopping signals exactly those PIDs.
#
#   ./start_cluster.sh start     build once (release), start the three nodes
#   ./start_cluster.sh status    each node's /raft/status
#   ./start_cluster.sh stop      SIGTERM each node by its PID file and wait for it
#   ./start_cluster.sh certs     make the certificates and tokens of a secure cluster in
#                                CERTS (openssl; existing files are kept)
#
# Environment: NODES (default 3), BASE_PORT (default 9001), DATA (default data),
# EXTRA_ARGS (passed to every node), SECURE=1 (TLS for clients with tokens and mutual TLS
# between nodes, from the files in CERTS, made by `certs` if missing), CERTS (default
# DATA/certs).
#
# A secure cluster's files: ca.pem (clients trust it), node-N.pem/.key (each node's
# certificate for clients), peer-ca.pem (signs the nodes' peer certificates, and nothing
# else), peer-node-N.pem/.key, tokens (NAME ROLE SHA256HEX), and admin.token, app.token
# (write) and reader.token for clients.
set -euo pipefail

NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-9001}
DATA=${DATA:-data}
CERTS=${CERTS:-$DATA/certs}
SECURE=${SECURE:-0}
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

# A P-256 key and a certificate signed by CA $1 (a self-signed CA when $1 is "-"):
# name $2, subject $3, extensions $4.
sign() {
    local ca=$1 name=$2 subject=$3 ext=$4
    if [ "$ca" = "-" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
            -subj "$subject" -keyout "$CERTS/$name.key" -out "$CERTS/$name.pem" 2>/dev/null
    else
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
            -keyout "$CERTS/$name.key" -out "$CERTS/$name.csr" 2>/dev/null
        openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/$ca.pem" -CAkey "$CERTS/$ca.key" \
            -CAcreateserial -days 90 -extfile <(printf '%s' "$ext") \
            -out "$CERTS/$name.pem" 2>/dev/null
        rm -f "$CERTS/$name.csr"
    fi
}

certs() {
    mkdir -p "$CERTS"
    local san="subjectAltName=DNS:localhost,IP:127.0.0.1"
    [ -f "$CERTS/ca.pem" ] || sign - ca "/CN=strata client CA" ""
    [ -f "$CERTS/peer-ca.pem" ] || sign - peer-ca "/CN=strata peer CA" ""
    local i
    for i in $(seq 1 "$NODES"); do
        [ -f "$CERTS/node-$i.pem" ] ||
            sign ca "node-$i" "/CN=node-$i" "$san"$'\n'"extendedKeyUsage=serverAuth"
        [ -f "$CERTS/peer-node-$i.pem" ] ||
            sign peer-ca "peer-node-$i" "/CN=node-$i" \
                "$san"$'\n'"extendedKeyUsage=serverAuth,clientAuth"
    done
    if [ ! -f "$CERTS/tokens" ]; then
        local role name
        echo "# name role sha256(token)" >"$CERTS/tokens"
        for name in admin app reader; do
            case $name in admin) role=admin ;; app) role=write ;; *) role=read ;; esac
            openssl rand -hex 32 | tr -d '\n' >"$CERTS/$name.token"
            echo "$name $role $(sha256sum <"$CERTS/$name.token" | cut -d' ' -f1)" >>"$CERTS/tokens"
        done
    fi
    chmod 600 "$CERTS"/*.key "$CERTS"/*.token "$CERTS/tokens"
    echo "certificates and tokens in $CERTS"
}

# The security options of node $1.
secure_args() {
    [ "$SECURE" = "1" ] || return 0
    echo "--tls-cert $CERTS/node-$1.pem --tls-key $CERTS/node-$1.key" \
        "--auth-file $CERTS/tokens" \
        "--peer-cert $CERTS/peer-node-$1.pem --peer-key $CERTS/peer-node-$1.key" \
        "--peer-ca $CERTS/peer-ca.pem"
}

start() {
    cargo build --release --features replication --example server
    mkdir -p "$DATA"
    if [ "$SECURE" = "1" ] && [ ! -f "$CERTS/tokens" ]; then
        certs
    fi
    local i
    for i in $(seq 1 "$NODES"); do
        local pidfile="$DATA/node-$i.pid"
        if running "$pidfile"; then
            echo "node-$i already running (pid $(cat "$pidfile"))"
            continue
        fi
        # shellcheck disable=SC2086
        "$BIN" --node-id "node-$i" --host 127.0.0.1 --port $((BASE_PORT + i - 1)) \
            --data-dir "$DATA/node-$i" --peers "$(peers_of "$i")" $(secure_args "$i") \
            ${EXTRA_ARGS:-} \
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
        if [ "$SECURE" = "1" ]; then
            curl -s --max-time 2 --cacert "$CERTS/ca.pem" \
                -H "Authorization: Bearer $(cat "$CERTS/reader.token")" \
                "https://localhost:$port/raft/status" || printf 'unreachable'
        else
            curl -s --max-time 2 "http://127.0.0.1:$port/raft/status" || printf 'unreachable'
        fi
        echo
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    certs) certs ;;
    *) echo "usage: $0 start|stop|status|certs" >&2; exit 2 ;;
esac
