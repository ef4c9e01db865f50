#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fault harness (issue 6): N hosts (default 3) as network namespaces running
# the real daemons, a verifying iSCSI load, and random faults; nothing
# acknowledged may be lost, and the group must heal afterwards.
#
#   hosts  ts-f1 .. ts-fN: network namespaces, each with veth ts-fvN
#          (10.99.0.N/24) whose peer ts-fsN is a port of bridge ts-fbr in a
#          fourth namespace, the switch ts-fsw; the root namespace is on port
#          ts-fs0 through ts-fh0 (10.99.0.254). The bridge lives in its own
#          namespace because bridged frames go through the iptables FORWARD
#          chain of the bridge's namespace (br_netfilter), and the root one
#          may drop them (Docker sets its policy to DROP).
#   nodes  `tessera node --id N` in ts-fN, iSCSI on 10.99.0.N:3260, two file
#          disks each under the work dir, one shared registry directory
#   target `tessera controller` in ts-f1 (host 1 is "the node serving the
#          target"): a 4+2 group across the nodes (2 fragments per node on 3
#          hosts, 1 per node on 6), volumes on 10.99.0.1:3261
#   load   ts-faults-load in the root namespace on each volume (one 64 MiB
#          volume; with --volumes V, V of 24 MiB): WRITE + SYNCHRONIZE CACHE of
#          versioned 4 KiB blocks, read checks, rides through outages
#          (reconnects, re-issues unacknowledged writes)
#   groups with --volumes V (engines in the nodes): 16 MiB members, so the
#          controller creates a group for every two volumes, each served by
#          the least loaded node: the volumes' engines spread over the hosts
#
# Each round, after a random 0.5-2.5 s of load, one fault picked at random:
#   node-kill   kill -9 (1 in 4: SIGTERM) a node other than 1, restart it 0.5-4 s later
#   link-down   any node: its switch port down (carrier lost) for 0.5-5 s
#   link-drop   any node: the switch silently drops its packets both
#               ways (iptables FORWARD in ts-fsw) for 0.5-5 s
#   ctl-kill    kill -9 the controller, restart it 0-2 s later
#   host-kill   kill -9 controller and node 1 together (host 1 crashes), restart
#   node-ctl-kill  kill -9 a node other than 1, 0.3-2 s later kill -9 the controller;
#               the controller restarts without that node (k members left),
#               the node 0.5-3 s after it
# With --engines nodes (the engine in a node daemon, `tessera controller
# --engines nodes` carrying no volume data; the load logs in at the
# controller's portal and follows the redirect to the serving node), also:
#   owner-kill  kill -9 the node serving a group picked at random (the
#               controller hands each group it served to the least loaded live
#               node at a new epoch), restart it 0.5-4 s after the takeover
#               began (the group record's epoch rose)
#   owner-pause SIGSTOP the node serving a random group until the takeover of
#               that group began, then 0-1.5 s
#               more, then SIGCONT: the stale owner must release the group, and
#               its writes still in flight are refused by the members that the
#               new owner fenced (docs/fencing.md)
#   (the new owner may need the old owner's node back before it can read the
#   pool: writes in flight when that node died leave stripes it cannot vouch
#   for without that node's fragments, the degraded write hole)
# then wait until every group is healthy again (`tessera agrp list`) and
# every load has acknowledged new writes.
#
# At the end: stop the loads (each verifies every block: each must hold its last
# acknowledged version or a later attempted one); wait for heal (state
# healthy, replicated_bytes 0) -> healed=yes|no; verify again after heal; then,
# with node N and then node N-1 killed in turn, verify again (degraded reads
# must decode from the healed fragments).
#
# Usage: e2e/faults.sh --rounds N [--hosts H] [--engines nodes|controller] [--volumes V] [--seed S] [--faults K,K..] [--keep] [--tessera PATH] [--load PATH]
#   --rounds N      fault rounds (default 3)
#   --engines WHERE controller (default) or nodes (see above)
#   --volumes V     volumes under load (default 1; more than 1 needs --engines nodes)
#   --hosts H       hosts (3..32, default 3): a 4+2 group needs 3
#   --seed S        seeds the choice of faults and timings (bash RANDOM) and the load
#   --faults LIST   only these kinds, comma-separated (default: all of the above)
#   --keep          keep the work dir (logs, disks, registry) even on success
#   --tessera PATH  the tessera binary (default: build-test/bin, else build/bin)
#   --load PATH     ts-faults-load (default: next to the tessera binary)
# Needs root (namespaces, veth, iptables in ts-fsw only), iproute2, iptables,
# jq. Exit 77 (ctest skip) when not root, a tool is missing or tessera has no
# controller; one run at a time (flock: a second run waits up to 20 min).
# Last line: rounds=N acked=A lost=L healed=yes|no. Exit 0 iff lost=0, healed=yes
# and every step (group healthy after each round, IO resumed) succeeded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

KINDS=(node-kill link-down link-drop ctl-kill host-kill node-ctl-kill)
NODE_KINDS=(owner-kill owner-pause)
ROUNDS=3 HOSTS=3 ENGINES=controller VOLUMES=1 SEED="" KEEP=0 T="" LD="" WANT=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --engines) ENGINES=$2; shift 2 ;;
    --volumes) VOLUMES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --faults) WANT=$2; shift 2 ;;
    --tessera) T=$(readlink -f "$2"); shift 2 ;;
    --load) LD=$(readlink -f "$2"); shift 2 ;;
    *) echo "usage: $0 --rounds N [--hosts H] [--seed S] [--faults K,K..] [--keep] [--tessera PATH] [--load PATH]" >&2; exit 2 ;;
  esac
done
[[ $ROUNDS =~ ^[0-9]+$ ]] || { echo "faults: --rounds wants a number" >&2; exit 2; }
case $ENGINES in
  controller) ;;
  nodes) KINDS+=("${NODE_KINDS[@]}") ;;
  *) echo "faults: --engines wants nodes or controller" >&2; exit 2 ;;
esac
if [ -n "$WANT" ]; then
  IFS=, read -r -a want <<<"$WANT"
  for k in "${want[@]}"; do
    [[ " ${KINDS[*]} " == *" $k "* ]] || { echo "faults: unknown fault $k (${KINDS[*]})" >&2; exit 2; }
  done
  KINDS=("${want[@]}")
fi
[[ $VOLUMES =~ ^[0-9]+$ ]] && [ "$VOLUMES" -ge 1 ] && [ "$VOLUMES" -le 32 ] &&
  { [ "$VOLUMES" = 1 ] || [ "$ENGINES" = nodes ]; } ||
  { echo "faults: --volumes wants 1 to 32 (more than 1 with --engines nodes)" >&2; exit 2; }
[[ $HOSTS =~ ^[0-9]+$ ]] && [ "$HOSTS" -ge 3 ] && [ "$HOSTS" -le 32 ] ||
  { echo "faults: --hosts wants a number from 3 to 32" >&2; exit 2; }
ALL=$(seq 1 "$HOSTS")
NODE_ARGS=() CTL_ARGS=() ENGINE_HOST=""
if [ "$ENGINES" = nodes ]; then
  NODE_ARGS=(--io-timeout-ms 1500) CTL_ARGS=(--engines nodes) ENGINE_HOST=1
fi
[ -n "$SEED" ] || SEED=$(( (RANDOM << 15) | RANDOM ))
[[ $SEED =~ ^[0-9]+$ ]] || { echo "faults: --seed wants a number" >&2; exit 2; }
RANDOM=$SEED
if [ -z "$T" ]; then
  for d in build-test build; do
    [ -x "$repo/$d/bin/tessera" ] && { T=$repo/$d/bin/tessera; break; }
  done
fi
[ -n "$LD" ] || LD=$(dirname "${T:-.}")/ts-faults-load
[ -x "$T" ] && [ -x "$LD" ] || { echo "faults: no tessera/ts-faults-load binary (build first, or --tessera/--load)" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || { echo "faults: needs root (network namespaces)"; exit 77; }
grep -q -- --registry <<<"$("$T" controller --help 2>&1)" ||
  { echo "faults: $T has no \`tessera controller\`"; exit 77; }
for t in ip iptables jq flock; do
  command -v $t >/dev/null || { echo "faults: missing $t"; exit 77; }
done

T0=$SECONDS
log() { printf '[faults %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
# rnd_ms LO HI: a random number of milliseconds in [LO, HI]
rnd_ms() { echo $(( $1 + RANDOM % ($2 - $1 + 1) )); }
ms_s() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# One run at a time: names and subnet are fixed. Holding the lock, any ts-f*
# namespace left over is from a run that died: remove it.
exec 9>/run/lock/ts-faults.lock
if ! flock -n 9; then
  echo "faults: another run holds /run/lock/ts-faults.lock; waiting (20 min at most)"
  flock -w 1200 9 || { echo "faults: still busy"; exit 1; }
fi

SUBNET=10.99.0
PORT=3260 CPORT=3261
USER_=tessera-faults SECRET_=faults-secret-$RANDOM$RANDOM
W=$(mktemp -d /tmp/ts-faults.XXXXXX)
EP=unix://$W/ctl.sock
NODE_PID=() CTL_PID="" LOAD_PID=() URL=()
VOLS=$(seq 1 "$VOLUMES")
MEMBER=48Mi VSIZE=64Mi
[ "$VOLUMES" -gt 1 ] && MEMBER=16Mi VSIZE=24Mi
for i in $ALL; do NODE_PID[$i]=""; done
declare -A CUT=()
status=fail

# shellcheck source=lib/netns.sh
. "$here/lib/netns.sh"
# shellcheck disable=SC2086 # (ALL: a list of numbers)
net_down() { netns_down ts-f $ALL; }

# Every exit: processes, namespaces, and the work dir unless kept. Each pid
# is waited for by name (a bare `wait` would print "Killed" for each).
cleanup() {
  set +e
  local p
  for p in "${LOAD_PID[@]}" "$CTL_PID" "${NODE_PID[@]}"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  net_down
  if [ "$KEEP" = 1 ] || [ "$status" != ok ]; then
    [ "$status" = done ] || echo "faults: work dir kept: $W" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2086
net_up() { netns_up ts-f $SUBNET $ALL; }

start_node() { # N
  local i=$1
  ip netns exec ts-f$i env TESSERA_CHAP_USER=$USER_ TESSERA_CHAP_SECRET=$SECRET_ \
    "$T" node --id "$i" --cluster "$CLUSTER" --addr $SUBNET.$i --port $PORT \
    --registry "$W/registry" --disk "$W/n$i/d1" --disk "$W/n$i/d2" \
    --extent-size 1048576 --heartbeat-ms 200 "${NODE_ARGS[@]}" \
    ${ENGINE_HOST:+--state-dir "$W/n$i/state"} >>"$W/node$i.log" 2>&1 &
  NODE_PID[$i]=$!
}

stop_node() { # N SIGNAL
  local i=$1
  [ -n "${NODE_PID[$i]}" ] || return 0
  kill -"$2" "${NODE_PID[$i]}" 2>/dev/null || true
  wait "${NODE_PID[$i]}" 2>/dev/null || true
  NODE_PID[$i]=""
}

spawn_ctl() {
  : >"$W/ctl.out"
  ip netns exec ts-f1 env TESSERA_CHAP_USER=$USER_ TESSERA_CHAP_SECRET=$SECRET_ \
    "$T" controller --registry "$W/registry" --group "$GROUP" --state-dir "$W/ctl" \
    --portal $SUBNET.1:$CPORT --csi-endpoint "$EP" --ec 4+2 --member-size $MEMBER \
    --io-timeout-ms 1500 "${CTL_ARGS[@]}" >"$W/ctl.out" 2>>"$W/ctl.log" &
  CTL_PID=$!
}

# With --engines nodes: the node serving group $1 (default: the first) now
# (the live node listing it at the highest epoch in its record), and that
# epoch; "0 0" when none.
owner_now() {
  local now
  now=$(($(date +%s%3N)))
  jq -rs --arg g "${1:-$GROUP}" --argjson now "$now" '
    [.[] | select(.heartbeat_ms + 3000 >= $now) | . as $n
     | (.served // [])[] | select(.uuid == $g) | {node: $n.node_id, epoch}]
    | max_by(.epoch) // {node: 0, epoch: 0} | "\(.node) \(.epoch)"' \
    "$W"/registry/nodes/*.json 2>/dev/null || echo "0 0"
}

# wait_record_above GROUP EPOCH SECONDS: 0 once the group record's epoch is higher
wait_record_above() {
  local end=$((SECONDS + $3)) e
  while [ $SECONDS -lt $end ]; do
    e=$(jq -r '.epoch // 0' "$W/registry/groups/$1.json" 2>/dev/null || echo 0)
    [ "$e" -gt "$2" ] && return 0
    sleep 0.1
  done
  log "group $1: the record's epoch did not rise above $2 in $3 s"
  return 1
}

# wait_owner_above GROUP EPOCH SECONDS: 0 once a live node serves it at a higher epoch
wait_owner_above() {
  local end=$((SECONDS + $3)) o e
  while [ $SECONDS -lt $end ]; do
    read -r o e <<<"$(owner_now "$1")"
    [ "$o" != 0 ] && [ "$e" -gt "$2" ] && return 0
    sleep 0.2
  done
  log "group $1: no new owner above epoch $2 after $3 s (now: $(owner_now "$1"))"
  return 1
}

# The groups in the registry, and one of them at random.
all_groups() {
  local f
  for f in "$W"/registry/groups/*.json; do basename "$f" .json; done
}
random_group() {
  local g
  mapfile -t g < <(all_groups)
  echo "${g[$((RANDOM % ${#g[@]}))]}"
}

wait_ctl() { # until it prints ready; 1 if it died or is not ready in 120 s
  local i
  for i in $(seq 1200); do # the group is assembled first
    grep -q '^ready' "$W/ctl.out" && return 0
    if ! kill -0 "$CTL_PID" 2>/dev/null; then
      wait "$CTL_PID" 2>/dev/null || true
      tail -5 "$W/ctl.log"; log "controller died while starting"; CTL_PID=""; return 1
    fi
    sleep 0.1
  done
  tail -5 "$W/ctl.log"; log "controller not ready after 120 s"; return 1
}

start_ctl() { spawn_ctl; wait_ctl; }

ctl_alive() {
  [ -n "$CTL_PID" ] && kill -0 "$CTL_PID" 2>/dev/null && return 0
  if [ -n "$CTL_PID" ]; then
    wait "$CTL_PID" 2>/dev/null || true
    tail -5 "$W/ctl.log"; log "the controller exited"; CTL_PID=""
  fi
  return 1
}

stop_ctl() { # SIGNAL
  [ -n "$CTL_PID" ] || return 0
  kill -"$1" "$CTL_PID" 2>/dev/null || true
  wait "$CTL_PID" 2>/dev/null || true
  CTL_PID=""
}

# cut_link N down|drop: node N's switch port goes down (carrier lost), or
# the switch drops every frame from or to N (no RST, no ICMP: packets vanish).
cut_link() {
  CUT[$1]=$2
  if [ "$2" = down ]; then
    ip -n ts-fsw link set ts-fs$1 down
  else
    ip netns exec ts-fsw iptables -I FORWARD -s $SUBNET.$1 -j DROP
    ip netns exec ts-fsw iptables -I FORWARD -d $SUBNET.$1 -j DROP
  fi
}

restore_link() { # N
  if [ "${CUT[$1]}" = down ]; then
    ip -n ts-fsw link set ts-fs$1 up
  else
    ip netns exec ts-fsw iptables -D FORWARD -s $SUBNET.$1 -j DROP
    ip netns exec ts-fsw iptables -D FORWARD -d $SUBNET.$1 -j DROP
  fi
  unset "CUT[$1]"
}

# Every group's record from `tessera agrp list -o json`, one per line, as
# "uuid state replicated_bytes" (empty if unreachable).
groups_now() {
  timeout 10 "$T" --endpoint "$EP" agrp list -o json 2>/dev/null |
    jq -r '.array_groups[] | "\(.uuid) \(.state) \(.replicated_bytes // "missing")"' 2>/dev/null || true
}

# wait_group healthy|healed SECONDS: 0 once every group in the registry is
# healthy (healed: and its replicated_bytes 0), 1 at the deadline.
wait_group() {
  local want=$1 end=$((SECONDS + $2)) j n ok
  while [ $SECONDS -lt $end ]; do
    ctl_alive || return 1
    j=$(groups_now)
    n=$(all_groups | wc -l)
    if [ "$want" = healthy ]; then
      ok=$(awk '$2 == "healthy"' <<<"$j" | wc -l)
    else
      ok=$(awk '$2 == "healthy" && $3 == "0"' <<<"$j" | wc -l)
    fi
    [ -n "$j" ] && [ "$ok" -eq "$n" ] && return 0
    sleep 0.5
  done
  log "groups not all $want after $2 s: $(tr '\n' ';' <<<"${j:-unreachable}")"
  return 1
}

load_acked() { # last acked= of load $1's progress lines
  local a
  a=$(grep -o 'acked=[0-9]*' "$W/load$1.log" 2>/dev/null | tail -1)
  echo "${a#acked=}"
}

acked_all() { # the sum of load_acked over the volumes
  local v s=0 a
  for v in $VOLS; do a=$(load_acked "$v"); s=$((s + ${a:-0})); done
  echo $s
}

# wait until every load acknowledges a write after now (IO flows again)
wait_io() {
  local end=$((SECONDS + $1)) v a
  local -A a0=() moved=()
  for v in $VOLS; do a0[$v]=$(load_acked "$v"); done
  while [ $SECONDS -lt $end ]; do
    sleep 1.1 # progress lines come every second
    for v in $VOLS; do
      a=$(load_acked "$v")
      [ "${a:-0}" -gt "${a0[$v]:-0}" ] && moved[$v]=1
      kill -0 "${LOAD_PID[$v]}" 2>/dev/null || { log "load $v exited"; return 1; }
    done
    [ "${#moved[@]}" -eq "$VOLUMES" ] && return 0
  done
  for v in $VOLS; do
    [ -n "${moved[$v]:-}" ] || log "volume $v: no write acknowledged for $1 s (acked=$(load_acked "$v"))"
  done
  return 1
}

# count RESULT: add a verification's lost blocks to LOST; unreadable ones (or
# no result) fail the run without counting as lost
count() {
  local l u
  l=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$1")
  u=$(sed -n 's/.* unreadable=\([0-9]*\).*/\1/p' <<<"$1")
  [ -n "$l" ] && [ -n "$u" ] || { FAILED=1; return; }
  LOST=$((LOST + l))
  [ "$u" -eq 0 ] || FAILED=1
}

verify() { # label: full read-back of every load's log
  local out v
  for v in $VOLS; do
    out=$("$LD" --verify --verify-timeout-ms 120000 --interval-ms 0 --log "$W/load$v.wal" "${URL[$v]}" 2>>"$W/verify.log" | tail -1) || true
    log "verify ($1) volume $v: ${out:-no result}"
    count "$out"
  done
}

# ---- setup ------------------------------------------------------------------
log "seed=$SEED rounds=$ROUNDS hosts=$HOSTS work=$W tessera=$T"
net_up
CLUSTER=$(cat /proc/sys/kernel/random/uuid)
GROUP=$(cat /proc/sys/kernel/random/uuid)
mkdir -p "$W/registry" "$W/ctl"
for i in $ALL; do
  mkdir -p "$W/n$i"
  truncate -s 256M "$W/n$i/d1" "$W/n$i/d2"
  start_node "$i"
done
LOST=0 ACKED=0 FAILED=0 HEALED=no DONE=0 PAUSED=0 SERVING=0
finish() { # the last line, and the exit status
  local rc=1
  [ "$LOST" -eq 0 ] && [ "$HEALED" = yes ] && [ "$FAILED" -eq 0 ] && rc=0
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then echo "faults: work dir kept: $W"; status=done; else status=ok; fi
  if [ "$ENGINES" = nodes ]; then
    # fencing at work: the members' first refusal after each raise, and the
    # stale engines that released the group
    local refused released
    refused=$(cat "$W"/node*.log 2>/dev/null | grep -c 'fenced IO refused' || true)
    released=$(cat "$W"/node*.log 2>/dev/null | grep -c 'a newer owner took group' || true)
    echo "rounds=$DONE volumes=$VOLUMES groups=$(all_groups | wc -l) serving_nodes=$SERVING acked=$ACKED lost=$LOST healed=$HEALED paused_owners=$PAUSED fence_refusal_events=$refused stale_engines_released=$released epoch=$(owner_now | cut -d' ' -f2)"
  else
    echo "rounds=$DONE acked=$ACKED lost=$LOST healed=$HEALED"
  fi
  exit $rc
}
# the group is placed on the nodes registered when the controller first starts
for i in $ALL; do
  for _ in $(seq 300); do
    [ -s "$W/registry/nodes/$i.json" ] && break
    kill -0 "${NODE_PID[$i]}" 2>/dev/null || { tail -5 "$W/node$i.log"; log "node $i died"; FAILED=1; finish; }
    sleep 0.1
  done
done
start_ctl || { FAILED=1; finish; }
log "controller ready: $(head -1 "$W/ctl.out")"
for v in $VOLS; do
  vol=$(timeout 120 "$T" --endpoint "$EP" volume create "faults$v" --size $VSIZE -o json) ||
    { log "volume create $v failed"; FAILED=1; finish; }
  URL[$v]=$(jq -r .iscsi_url <<<"$vol")
  # nodes: the load logs in at the controller's portal and follows the redirect
  [ "$ENGINES" = nodes ] && URL[$v]=$(sed "s|^iscsi://[^/]*/|iscsi://$SUBNET.1:$CPORT/|" <<<"${URL[$v]}")
  log "volume $v: $(jq -r .id <<<"$vol") ${URL[$v]}"
done
if [ "$ENGINES" = nodes ]; then
  SERVING=$(for g in $(all_groups); do owner_now "$g" | cut -d' ' -f1; done | sort -u | grep -vc '^0$' || true)
  log "$(all_groups | wc -l) group(s) served by $SERVING node(s)"
fi
for v in $VOLS; do
  "$LD" --log "$W/load$v.wal" --seed $((SEED + v)) --qd 4 --verify-timeout-ms 120000 "${URL[$v]}" \
    >"$W/load$v.out" 2>"$W/load$v.log" &
  LOAD_PID[$v]=$!
done
wait_io 60 || { FAILED=1; finish; }

# ---- rounds -----------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
  sleep "$(ms_s "$(rnd_ms 500 2500)")"
  kind=${KINDS[$((RANDOM % ${#KINDS[@]}))]}
  case $kind in
    node-kill)
      n=$((2 + RANDOM % (HOSTS - 1))) sig=KILL d=$(rnd_ms 500 4000)
      [ $((RANDOM % 4)) -eq 0 ] && sig=TERM
      log "round $r: $kind: SIG$sig node $n, restart after $(ms_s "$d") s"
      stop_node "$n" "$sig"; sleep "$(ms_s "$d")"; start_node "$n" ;;
    link-down|link-drop)
      n=$((1 + RANDOM % HOSTS)) d=$(rnd_ms 500 5000)
      log "round $r: $kind: node $n for $(ms_s "$d") s"
      cut_link "$n" "${kind#link-}"; sleep "$(ms_s "$d")"; restore_link "$n" ;;
    ctl-kill)
      d=$(rnd_ms 0 2000)
      log "round $r: $kind: kill -9 the controller, restart after $(ms_s "$d") s"
      stop_ctl KILL; sleep "$(ms_s "$d")"; start_ctl || { FAILED=1; break; } ;;
    host-kill)
      d=$(rnd_ms 0 2000)
      log "round $r: $kind: kill -9 controller and node 1, restart after $(ms_s "$d") s"
      stop_ctl KILL; stop_node 1 KILL; sleep "$(ms_s "$d")"
      start_node 1; start_ctl || { FAILED=1; break; } ;;
    owner-kill)
      g=$(random_group)
      read -r n e <<<"$(owner_now "$g")"
      d=$(rnd_ms 500 4000)
      [ "$n" != 0 ] || { log "round $r: $kind: nobody serves group $g"; FAILED=1; break; }
      log "round $r: $kind: kill -9 node $n (serving group $g at epoch $e); once the takeover began, restart it $(ms_s "$d") s later"
      stop_node "$n" KILL
      # as for owner-pause: the new owner may need this node's members back
      wait_record_above "$g" "$e" 30 || { FAILED=1; start_node "$n"; break; }
      sleep "$(ms_s "$d")"; start_node "$n"
      wait_owner_above "$g" "$e" 60 || { FAILED=1; break; }
      read -r o oe <<<"$(owner_now "$g")"
      log "round $r: $kind: node $o serves group $g at epoch $oe" ;;
    owner-pause)
      g=$(random_group)
      read -r n e <<<"$(owner_now "$g")"
      [ "$n" != 0 ] || { log "round $r: $kind: nobody serves group $g"; FAILED=1; break; }
      d=$(rnd_ms 0 1500)
      log "round $r: $kind: SIGSTOP node $n (serving group $g at epoch $e) until the controller hands it over, then $(ms_s "$d") s more"
      kill -STOP "${NODE_PID[$n]}"
      # The takeover has begun once the record's epoch is raised; the new
      # owner may need the paused node's members back to read the pool (the
      # degraded write hole), so the pause ends then, not once it serves.
      if ! wait_record_above "$g" "$e" 30; then kill -CONT "${NODE_PID[$n]}"; FAILED=1; break; fi
      sleep "$(ms_s "$d")"
      kill -CONT "${NODE_PID[$n]}"
      if ! wait_owner_above "$g" "$e" 60; then FAILED=1; break; fi
      read -r o oe <<<"$(owner_now "$g")"
      log "round $r: $kind: node $n resumed; node $o serves group $g at epoch $oe"
      PAUSED=$((PAUSED + 1)) ;;
    node-ctl-kill)
      n=$((2 + RANDOM % (HOSTS - 1))) d=$(rnd_ms 300 2000) d2=$(rnd_ms 500 3000)
      log "round $r: $kind: kill -9 node $n, $(ms_s "$d") s later the controller; node back $(ms_s "$d2") s after the controller"
      stop_node "$n" KILL; sleep "$(ms_s "$d")"; stop_ctl KILL
      spawn_ctl; sleep "$(ms_s "$d2")"; start_node "$n"
      wait_ctl || { FAILED=1; break; } ;;
  esac
  if ! wait_group healthy 180 || ! wait_io 60; then FAILED=1; break; fi
  DONE=$r
  log "round $r: healthy, acked=$(acked_all)"
done

# ---- end: verify, heal, verify, degraded verifies ----------------------------
if [ "$FAILED" -ne 0 ]; then
  # Bring everything back as an operator would, so that what follows tells
  # lost data from unavailable data: links, nodes, then the controller
  # (restarted if it is not serving a healthy group within 30 s).
  log "round $((DONE + 1)) failed; restoring links, nodes and the controller"
  for i in "${!CUT[@]}"; do restore_link "$i"; done
  for i in $ALL; do [ -n "${NODE_PID[$i]}" ] || start_node "$i"; done
  sleep 2 # (fresh heartbeats)
  if ! ctl_alive || ! wait_group healthy 30; then
    if [ -n "$CTL_PID" ]; then
      log "restarting the controller"
      kill -TERM "$CTL_PID" 2>/dev/null || true
      for _ in $(seq 200); do kill -0 "$CTL_PID" 2>/dev/null || break; sleep 0.1; done
      stop_ctl KILL
    fi
    start_ctl || { sleep 5; start_ctl; } || true
  fi
  ctl_alive && wait_group healthy 120 || true
fi
for v in $VOLS; do kill -TERM "${LOAD_PID[$v]}" 2>/dev/null || true; done
for v in $VOLS; do
  wait "${LOAD_PID[$v]}" 2>/dev/null || true
  LOAD_PID[$v]=""
  res=$(tail -1 "$W/load$v.out")
  log "load $v: $res"
  a=$(sed -n 's/^acked=\([0-9]*\).*/\1/p' <<<"$res")
  ACKED=$((ACKED + ${a:-0}))
  count "$res"
done
if ctl_alive && wait_group healed 300; then HEALED=yes; fi
log "heal: $(groups_now | tr '\n' ';')"
if ctl_alive; then
  verify "after heal"
fi
if [ "$HEALED" = yes ]; then
  for n in "$HOSTS" $((HOSTS - 1)); do
    stop_node "$n" KILL
    verify "node $n down"
    start_node "$n"
    wait_group healthy 120 || FAILED=1
  done
fi
finish
