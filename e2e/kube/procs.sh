# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# What controllers.sh, failover.sh and delegation.sh share: real `tessera node` and
# `tessera controller` processes on the custom resources of the API server
# run.sh started. Source it with T set and the work dir's tag as $1; it sets
# K, KC, W, CLUSTER, GROUP, NS (a namespace it creates), MN_STORE, CPID
# (controller pids by replica), kc (kubectl in NS), and everything
# e2e/multinode/common.sh gives (NP, PORT, fail, mn_start_node,
# mn_wait_ready) and kube_start_ctl; the cleanup resumes and kills the
# controllers first.
K=${TS_KUBE_KUBECONFIG:?run through e2e/kube/run.sh} KC=${TS_KUBE_KUBECTL:?}
for t in jq ss; do command -v "$t" >/dev/null || { echo "FAIL: $t missing"; exit 1; }; done
W=$(mktemp -d "/tmp/ts-$1.XXXXXX")
export TESSERA_CHAP_USER=tessera-nodes TESSERA_CHAP_SECRET="$1-test-secret"
CLUSTER=$(cat /proc/sys/kernel/random/uuid) GROUP=$(cat /proc/sys/kernel/random/uuid)
NS=tessera-$1-$$
MN_STORE=(--kube-namespace "$NS" --kubeconfig "$K")
# shellcheck source=../multinode/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../multinode/common.sh"
declare -A CPID=()
cleanup() {
	for x in "${!CPID[@]}"; do kill -CONT "${CPID[$x]}" 2>/dev/null; kill -KILL "${CPID[$x]}" 2>/dev/null; done
	mn_cleanup
}
kc() { "$KC" --kubeconfig "$K" -n "$NS" "$@"; }
"$KC" --kubeconfig "$K" create namespace "$NS" >/dev/null || fail "namespace $NS"

# kube_start_ctl X PORTAL [ARGS...]: controller replica X (a or b) on the Lease
# tessera-controller, identity ctl-X, its iSCSI portal PORTAL (host:port), 4+2
# groups; ARGS are added (--member-size, --lease-duration-s, ...). Its stdout
# goes to $W/ctl-X.out (truncated: a restart's ready line is its own), stderr
# to $W/ctl-X.err; CPID[X] is its pid.
kube_start_ctl() {
	local x=$1 portal=$2
	shift 2
	: >"$W/ctl-$x.out"
	"$T" controller --kube-namespace "$NS" --kubeconfig "$K" --leader-lease tessera-controller \
		--identity "ctl-$x" --group "$GROUP" --state-dir "$W/ctl-$x" --portal "$portal" \
		--ec 4+2 --io-timeout-ms 1500 --engines nodes "$@" >"$W/ctl-$x.out" 2>>"$W/ctl-$x.err" &
	CPID[$x]=$!
}
