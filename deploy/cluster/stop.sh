#!/usr/bin/env bash
# The same for every setup: deploy/stop.sh DIR.
exec "$(dirname "$0")/../stop.sh" "$@"
