# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Hosts as network namespaces on one private switch, for the root-only e2e
# tests (e2e/faults.sh, e2e/pr/pr.sh). Source it, then:
#
#   netns_up P SUBNET HOST...   namespace ${P}sw (the switch) holds bridge
#                               ${P}br; the root namespace reaches it through
#                               veth ${P}h0 (SUBNET.254/24, peer ${P}s0); host
#                               number i (1, 2, ...) named X is namespace ${P}X
#                               with veth ${P}vX (SUBNET.i/24) whose peer ${P}sX
#                               is a port of the bridge. Removes leftovers first.
#   netns_down P HOST...        remove all of it (no error if absent)
#
# The bridge lives in its own namespace because bridged frames go through the
# iptables FORWARD chain of the bridge's namespace (br_netfilter), and the
# root one may drop them (Docker sets its policy to DROP). Each test picks its
# own prefix and subnet, so two of them never share an interface.

netns_down() {
  local p=$1 h
  shift
  ip link del "${p}h0" 2>/dev/null || true # (would go with ${p}sw, but later)
  for h in "$@"; do ip netns del "$p$h" 2>/dev/null || true; done
  ip netns del "${p}sw" 2>/dev/null || true
}

netns_up() {
  local p=$1 subnet=$2 h i=0
  shift 2
  netns_down "$p" "$@"
  ip netns add "${p}sw"
  ip -n "${p}sw" link set lo up
  ip -n "${p}sw" link add "${p}br" type bridge
  ip -n "${p}sw" link set "${p}br" up
  ip link add "${p}h0" type veth peer name "${p}s0" netns "${p}sw"
  ip addr add "$subnet.254/24" dev "${p}h0"
  ip link set "${p}h0" up
  ip -n "${p}sw" link set "${p}s0" master "${p}br"
  ip -n "${p}sw" link set "${p}s0" up
  for h in "$@"; do
    i=$((i + 1))
    ip netns add "$p$h"
    ip -n "$p$h" link set lo up
    ip -n "$p$h" link add "${p}v$h" type veth peer name "${p}s$h" netns "${p}sw"
    ip -n "$p$h" addr add "$subnet.$i/24" dev "${p}v$h"
    ip -n "$p$h" link set "${p}v$h" up
    ip -n "${p}sw" link set "${p}s$h" master "${p}br"
    ip -n "${p}sw" link set "${p}s$h" up
  done
}
