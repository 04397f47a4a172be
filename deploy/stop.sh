#!/usr/bin/env bash
# Stop a setup started by sentinel/start.sh or cluster/start.sh: SIGTERM each process whose pid file is in DIR (Redis saves
# and exits), wait for it, SIGKILL what is left after 10 s, then delete DIR (KEEP=1 keeps it).
#
# Usage: stop.sh DIR
set -euo pipefail

DIR=${1:?usage: stop.sh DIR (the directory start.sh printed)}
[[ -d $DIR ]] || { echo "stop: no such directory: $DIR" >&2; exit 1; }

pids=()
for pidfile in "$DIR"/*.pid; do
  [[ -e $pidfile ]] || continue
  pid=$(<"$pidfile")
  # Only a redis process that this setup started (the pid may have been reused since).
  if [[ $pid =~ ^[0-9]+$ ]] && grep -qa redis "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  fi
done

deadline=$((SECONDS + 10))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "stop: $pid did not exit after SIGTERM; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
done
rm -f "$DIR"/*.pid
echo "stop: stopped ${#pids[@]} process(es) in $DIR" >&2

if [[ ${KEEP:-0} != 1 ]]; then
  rm -rf "$DIR"
fi
