# shellcheck shell=bash
# Shared by sentinel/start.sh and cluster/start.sh (sourced, not run): checks the binaries and
# DIR, stops what was started if a step fails, and small helpers. Expects REDIS_SERVER, REDIS_CLI,
# DIR and say() to be set.

command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found on the PATH"
command -v "$REDIS_CLI" >/dev/null || die "$REDIS_CLI not found on the PATH"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if compgen -G "$DIR/*.pid" >/dev/null; then
  die "$DIR already holds pid files: stop that setup first (stop.sh $DIR)"
fi

# Stop whatever this run started if anything below fails.
cleanup_on_error() {
  local rc=$?
  say "start failed (status $rc); stopping what was started in $DIR"
  KEEP=1 "$(dirname "$0")/stop.sh" "$DIR" >&2 || true
  local log
  for log in "$DIR"/*.log; do
    [[ -e $log ]] && { say "--- tail of $log"; tail -n 5 "$log" >&2; }
  done
  say "logs kept in $DIR"
  exit "$rc"
}
trap cleanup_on_error ERR

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "timed out waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}
cli() { "$REDIS_CLI" -h 127.0.0.1 -p "$@"; }
answers() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }

# A free port: nothing listens on it and this run has not chosen it (CHOSEN), between LOW and
# LOW + SPAN, below the kernel's ephemeral range (32768+, where a client's outgoing connection
# may hold it), never 6379. With OFFSET, port + OFFSET must be free too (a cluster bus port).
CHOSEN=()
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # free_port LOW SPAN [OFFSET]
  local low=$1 span=$2 offset=${3:-0} p _
  for _ in $(seq 500); do
    p=$((low + RANDOM % span))
    [[ " ${CHOSEN[*]-} " == *" $p "* ]] && continue
    port_in_use "$p" && continue
    if ((offset)); then
      [[ " ${CHOSEN[*]-} " == *" $((p + offset)) "* ]] && continue
      port_in_use "$((p + offset))" && continue
    fi
    echo "$p"
    return 0
  done
  die "no free port found on 127.0.0.1"
}
