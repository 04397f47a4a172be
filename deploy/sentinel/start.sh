#!/usr/bin/env bash
# Start a loopback-only Redis Sentinel setup for trying aqueue with failover:
# 1 master, 1 replica and 3 sentinels (quorum 2) watching the master set named "aqueue",
# each on a free port of 127.0.0.1, with all data, configs, logs and pid files in one directory.
#
#   eval "$(deploy/sentinel/start.sh)"     # exports AQUEUE_SENTINEL_DIR, ..._PORTS, master port
#   redis-cli -p "${AQUEUE_SENTINEL_PORTS%% *}" sentinel get-master-addr-by-name aqueue
#   redis-cli -p "${AQUEUE_SENTINEL_PORTS%% *}" sentinel failover aqueue   # a planned failover
#   kill -STOP "$(cat "$AQUEUE_SENTINEL_DIR/master.pid")"  # or a hung master: failover in ~7 s
#   deploy/sentinel/stop.sh "$AQUEUE_SENTINEL_DIR"
#
# Usage: start.sh [DIR]   (DIR defaults to a new temporary directory; it must not be in use)
# Uses the redis-server and redis-cli on the PATH (override with REDIS_SERVER / REDIS_CLI).
# Progress goes to stderr; stdout carries only the `export` lines. Never touches port 6379.
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
MASTER_NAME=aqueue
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/aqueue-sentinel.XXXXXX")}

say() { echo "sentinel: $*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=deploy/_lib.sh
source "$(dirname "$0")/../_lib.sh"

pick_ports() { # sets the named variables to distinct free ports
  local name port
  for name in "$@"; do
    port=$(free_port 20000 12000) || exit 1
    printf -v "$name" '%s' "$port"
    CHOSEN+=("$port")
  done
}

info_has() { cli "$1" info "$2" 2>/dev/null | tr -d '\r' | grep -qx "$3"; }

pick_ports MASTER REPLICA S1 S2 S3

start_redis() { # start_redis NAME PORT [extra args...]
  local name=$1 port=$2
  shift 2
  mkdir -p "$DIR/$name"
  # The recommended settings of deploy/redis.conf that matter here, on loopback only.
  "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --protected-mode yes \
    --dir "$DIR/$name" --daemonize yes --pidfile "$DIR/$name.pid" --logfile "$DIR/$name.log" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --save "" "$@"
  wait_until 10 "redis $name on port $port" answers "$port"
}

say "starting in $DIR ($("$REDIS_SERVER" --version | cut -d' ' -f3))"
start_redis master "$MASTER"
start_redis replica "$REPLICA" --replicaof 127.0.0.1 "$MASTER"
wait_until 30 "the replica to sync" info_has "$REPLICA" replication master_link_status:up

for port in "$S1" "$S2" "$S3"; do
  name=sentinel-$port
  mkdir -p "$DIR/$name"
  # Sentinels rewrite their config file (what they learn), so each gets its own writable copy.
  cat >"$DIR/$name.conf" <<CONF
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $DIR/$name.pid
logfile $DIR/$name.log
dir $DIR/$name
sentinel monitor $MASTER_NAME 127.0.0.1 $MASTER 2
sentinel down-after-milliseconds $MASTER_NAME 5000
sentinel failover-timeout $MASTER_NAME 30000
sentinel parallel-syncs $MASTER_NAME 1
CONF
  "$REDIS_SERVER" "$DIR/$name.conf" --sentinel
  wait_until 10 "sentinel on port $port" answers "$port"
done

# Ready when every sentinel sees the master, its replica and the two other sentinels.
sentinel_ready() {
  local port=$1 state
  state=$(cli "$port" sentinel master "$MASTER_NAME" | tr -d '\r' | paste -sd' ')
  [[ " $state " == *" num-slaves 1 "* && " $state " == *" num-other-sentinels 2 "* ]]
}
for port in "$S1" "$S2" "$S3"; do
  wait_until 30 "sentinel $port to discover the replica and its peers" sentinel_ready "$port"
done
trap - ERR

master_addr=$(cli "$S1" sentinel get-master-addr-by-name "$MASTER_NAME" | paste -sd:)
say "ready: master $master_addr, replica 127.0.0.1:$REPLICA, sentinels on $S1 $S2 $S3"
say "stop with: $(dirname "$0")/stop.sh $DIR"
cat <<ENV
export AQUEUE_SENTINEL_DIR='$DIR'
export AQUEUE_SENTINEL_MASTER_NAME='$MASTER_NAME'
export AQUEUE_SENTINEL_MASTER_PORT='$MASTER'
export AQUEUE_SENTINEL_REPLICA_PORT='$REPLICA'
export AQUEUE_SENTINEL_PORTS='$S1 $S2 $S3'
ENV
