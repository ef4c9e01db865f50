#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SCSI persistent reservations end to end (issue 17): one `tessera dev`, two
# initiator hosts as network namespaces, PR state that must outlive the engine.
#
#   net    ts-pa ("node A", 10.97.7.1) and ts-pb ("node B", 10.97.7.2), each
#          a veth into bridge ts-pbr in namespace ts-psw (the switch; in its
#          own namespace like e2e/faults.sh, so the root namespace's iptables
#          FORWARD policy never sees the frames); the root namespace is on
#          the bridge through ts-ph0 (10.97.7.254). Subnet and names are this
#          test's own (e2e/faults.sh uses 10.99.0.0/24 and ts-f*).
#   target `tessera dev` in the root namespace, portal 10.97.7.254:3271, its
#          own state directory under the work dir; two 64 MiB volumes made
#          with the CLI: pr-cu and pr-fence.
#
# (a) libiscsi's persistent-reservation suites (iscsi-test-cu, two initiator
#     names) on pr-cu, run from node A and again from node B.
# (b) fencing on pr-fence with ts-pr-tool, A in ts-pa and B in ts-pb, taking
#     turns through marker files: A registers 0xA, reserves WRITE EXCLUSIVE,
#     writes; B registers 0xB, its write is a RESERVATION CONFLICT (reads
#     pass); B preempts 0xA; A (still logged in) gets REGISTRATIONS PREEMPTED
#     then RESERVATION CONFLICT; B writes. Then `tessera dev` is killed (-9)
#     and restarted on the same state directory: B still holds WRITE
#     EXCLUSIVE with key 0xB, the only registration; A's writes still
#     conflict, B's pass (B logs in with the same ISID: the same I_T nexus).
#
# Usage: e2e/pr/pr.sh TESSERA TS-PR-TOOL [--keep]
# Needs root (namespaces, veth), iproute2, flock and iscsi-test-cu
# (libiscsi-bin): exit 77 (ctest skip) without them. One run at a time
# (flock). Last line: pr_cu_passed=P pr_cu_total=T pr_cu_failed=F fence=ok|FAILED.
# Exit 0 iff every suite test passed and every fencing step went as expected.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
T=$(readlink -f "${1:?usage: pr.sh TESSERA TS-PR-TOOL [--keep]}")
TOOL=$(readlink -f "${2:?usage: pr.sh TESSERA TS-PR-TOOL [--keep]}")
KEEP=0
[ "${3:-}" = --keep ] && KEEP=1

[ "$(id -u)" -eq 0 ] || { echo "pr: needs root (network namespaces)"; exit 77; }
for t in ip flock iscsi-test-cu; do
  command -v $t >/dev/null || { echo "pr: missing $t"; exit 77; }
done
exec 9>/run/lock/ts-pr.lock
flock -w 600 9 || { echo "pr: another run holds /run/lock/ts-pr.lock"; exit 1; }

SUBNET=10.97.7 PORT=3271
IA=iqn.2026-01.io.tessera:pr-node-a IB=iqn.2026-01.io.tessera:pr-node-b
W=$(mktemp -d /tmp/ts-pr.XXXXXX)
DEV_BIN=$T DEV_DIR=$W DEV_PORT=$PORT DEV_ADDR=$SUBNET.254
# shellcheck source=../lib/dev.sh
. "$repo/e2e/lib/dev.sh"
status=fail

# shellcheck source=../lib/netns.sh
. "$repo/e2e/lib/netns.sh"
net_down() { netns_down ts-p a b; }

cleanup() {
  set +e
  dev_kill KILL
  net_down
  if [ "$KEEP" = 1 ] || [ "$status" != ok ]; then
    echo "pr: work dir kept: $W" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

net_up() { netns_up ts-p $SUBNET a b; }

net_up
dev_start
URL_CU=$(dev_volume pr-cu 64Mi)
URL_F=$(dev_volume pr-fence 64Mi)
echo "pr: tessera dev ready; pr-cu=$URL_CU pr-fence=$URL_F"

# (a) the suites, from each node; the second name is the other node's
SUITES="ALL.PrinReadKeys ALL.PrinServiceactionRange ALL.PrinReportCapabilities ALL.ProutRegister
ALL.ProutReserve ALL.ProutClear ALL.ProutPreempt ALL.Reserve6"
CU_TOTAL=0 CU_PASSED=0 CU_FAILED=0
for n in a b; do
  if [ $n = a ]; then i1=$IA i2=$IB; else i1=$IB i2=$IA; fi
  for s in $SUITES; do
    log=$W/cu-$n-$s.log
    set +e
    ip netns exec ts-p$n timeout 300 iscsi-test-cu --dataloss -i "$i1" -I "$i2" --test "$s" "$URL_CU" \
      >"$log" 2>&1
    rc=$?
    set -e
    # "tests  <total> <ran> <passed> <failed> <inactive>"
    read -r _ total _ passed failed _ <<<"$(grep -E '^ +tests ' "$log" || echo "tests 0 0 0 1 0")"
    CU_TOTAL=$((CU_TOTAL + total)) CU_PASSED=$((CU_PASSED + passed)) CU_FAILED=$((CU_FAILED + failed))
    echo "pr: node $n $s: $passed/$total passed, rc=$rc"
    if [ "$failed" != 0 ] || [ "$rc" != 0 ] || [ "$total" = 0 ]; then
      grep -E "FAILED$|^    [0-9]+\. " "$log" || tail -20 "$log"
      [ "$failed" != 0 ] || CU_FAILED=$((CU_FAILED + 1))
    fi
  done
done

# (b) fencing; A's and B's steps interleave through the marker files in $S
S=$W/sync
mkdir -p "$S"
A() { ip netns exec ts-pa "$TOOL" "$URL_F" "$IA" 10 "$@"; }
B() { ip netns exec ts-pb "$TOOL" "$URL_F" "$IB" 11 "$@"; }
fence=ok
A register:0xa reserve:0xa:we write:good holder:0xa:we signal:"$S/a-reserved" \
  wait:"$S/b-preempted" write:conflict:2a05 write:conflict read:good signal:"$S/a-fenced" \
  >"$W/fence-a1.log" 2>&1 &
APID=$!
B wait:"$S/a-reserved" register:0xb write:conflict read:good keys:0xa,0xb holder:0xa:we \
  preempt:0xb:0xa:we signal:"$S/b-preempted" wait:"$S/a-fenced" write:good keys:0xb holder:0xb:we \
  >"$W/fence-b1.log" 2>&1 || fence=FAILED
touch "$S/b-preempted" "$S/a-fenced" # never leave A waiting if B stopped early
wait $APID || fence=FAILED
cat "$W/fence-a1.log" "$W/fence-b1.log"

# a crash of the engine, then the same state directory
dev_kill KILL
dev_start
echo "pr: tessera dev restarted after kill -9"
A holder:0xb:we keys:0xb write:conflict read:good >"$W/fence-a2.log" 2>&1 || fence=FAILED
B holder:0xb:we keys:0xb write:good reconnect write:good holder:0xb:we >"$W/fence-b2.log" 2>&1 ||
  fence=FAILED
A write:conflict >>"$W/fence-a2.log" 2>&1 || fence=FAILED
cat "$W/fence-a2.log" "$W/fence-b2.log"

if [ "$CU_FAILED" = 0 ] && [ "$CU_TOTAL" -gt 0 ] && [ "$CU_PASSED" = "$CU_TOTAL" ] && [ "$fence" = ok ]; then
  status=ok
fi
echo "pr_cu_passed=$CU_PASSED pr_cu_total=$CU_TOTAL pr_cu_failed=$CU_FAILED fence=$fence"
[ $status = ok ]
