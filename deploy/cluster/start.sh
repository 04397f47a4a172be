#!/usr/bin/env bash
# Start a loopback-only Redis Cluster of 3 masters (no replicas) for trying aqueue on Cluster,
# each on a free port of 127.0.0.1 (its cluster bus on port + 10000), with all data, logs and pid
# files in one directory. Every aqueue queue's keys share one hash tag (`aq:{queue}:`), so a
# queue lives in one slot: different queues spread over the masters.
#
#   eval "$(deploy/cluster/start.sh)"      # exports AQUEUE_CLUSTER_DIR and AQUEUE_CLUSTER_PORTS
#   redis-cli -c -p "${AQUEUE_CLUSTER_PORTS%% *}" cluster nodes
#   redis-cli -p "${AQUEUE_CLUSTER_PORTS%% *}" cluster keyslot 'aq:{gpu}:lanes'
#   deploy/cluster/stop.sh "$AQUEUE_CLUSTER_DIR"
#
# Usage: start.sh [DIR]   (DIR defaults to a new temporary directory; it must not be in use)
# Uses the redis-server and redis-cli on the PATH (override with REDIS_SERVER / REDIS_CLI).
# Progress goes to stderr; stdout carries only the `export` lines. Never touches port 6379.
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
MASTERS=3
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/aqueue-cluster.XXXXXX")}

say() { echo "cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=deploy/_lib.sh
source "$(dirname "$0")/../_lib.sh"

cluster_ok() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx cluster_state:ok; }

say "starting $MASTERS masters in $DIR ($("$REDIS_SERVER" --version | cut -d' ' -f3))"
PORTS=()
for _ in $(seq "$MASTERS"); do
  port=$(free_port 12000 10000 10000) || exit 1
  CHOSEN+=("$port" "$((port + 10000))")
  PORTS+=("$port")
  mkdir -p "$DIR/$port"
  # The recommended settings of deploy/redis.conf that matter here, on loopback only.
  "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --protected-mode yes \
    --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" \
    --cluster-node-timeout 5000 \
    --dir "$DIR/$port" --daemonize yes --pidfile "$DIR/$port.pid" --logfile "$DIR/$port.log" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save ""
  wait_until 10 "redis on port $port" answers "$port"
done

nodes=()
for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
if ! "$REDIS_CLI" --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
  >"$DIR/create.log" 2>&1; then
  say "redis-cli --cluster create failed:"
  cat "$DIR/create.log" >&2
  false
fi
for port in "${PORTS[@]}"; do
  wait_until 30 "node $port to report cluster_state:ok" cluster_ok "$port"
done
trap - ERR

say "ready: masters on ${PORTS[*]} (16384 slots split between them)"
say "stop with: $(dirname "$0")/stop.sh $DIR"
cat <<ENV
export AQUEUE_CLUSTER_DIR='$DIR'
export AQUEUE_CLUSTER_PORTS='${PORTS[*]}'
ENV
