# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# `tessera dev` on loopback for the crash and load tests. Source this file
# after setting DEV_BIN (the tessera binary), DEV_DIR (work dir: state in
# DEV_DIR/state, output in DEV_DIR/dev.out, log appended to DEV_DIR/dev.log)
# and DEV_PORT (DEV_ADDR: the portal address, default 127.0.0.1), then:
#
#   dev_start         start it (same state: a restart) and wait for "ready";
#                     DEV_PID is its pid; exits the script if it dies or is not
#                     ready within 30 s
#   dev_kill SIGNAL   signal it and reap it; DEV_PID becomes empty; returns
#                     its exit status (not for KILL)
#   dev_volume NAME SIZE
#                     create a volume, print its iSCSI URL (exit on failure)
#
# TESSERA_ENDPOINT is exported for the CLI.
DEV_PID=""
export TESSERA_ENDPOINT="unix://$DEV_DIR/state/csi.sock"

dev_start() {
  : >"$DEV_DIR/dev.out"
  "$DEV_BIN" dev --state-dir "$DEV_DIR/state" --disk-size 128Mi --portal "${DEV_ADDR:-127.0.0.1}:$DEV_PORT" \
    >"$DEV_DIR/dev.out" 2>>"$DEV_DIR/dev.log" &
  DEV_PID=$!
  for _ in $(seq 300); do
    grep -q '^ready' "$DEV_DIR/dev.out" && return 0
    kill -0 "$DEV_PID" 2>/dev/null || { tail -20 "$DEV_DIR/dev.log"; echo "tessera dev died"; exit 1; }
    sleep 0.1
  done
  echo "tessera dev not ready"; exit 1
}

dev_kill() {
  local rc=0
  [ -n "$DEV_PID" ] || return 0
  kill -"$1" "$DEV_PID" 2>/dev/null || true
  wait "$DEV_PID" 2>/dev/null || rc=$?
  DEV_PID=""
  [ "$1" = KILL ] || return $rc
}

dev_volume() {
  local url
  url=$("$DEV_BIN" volume create "$1" --size "$2" -o json |
    sed -n 's/.*"iscsi_url": *"\([^"]*\)".*/\1/p')
  [ -n "$url" ] || { echo "volume create $1 failed"; exit 1; }
  echo "$url"
}
