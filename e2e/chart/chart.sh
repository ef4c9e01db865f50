#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Helm chart runs the real product, checked against the real API server
# e2e/kube/run.sh starts (no kubelet: the Pods' commands are run here as
# processes, the way their containers would run them):
#
#  1. helm lint --strict; the rendered DaemonSet runs `tessera node --id auto
#     --kube-namespace ... --csi-endpoint ...`, the Deployment `tessera
#     controller --engines nodes --leader-lease ...`; every flag they pass is
#     one the binary under test knows; the cluster and group uuids are the
#     same at every render of a release and differ between releases; raw
#     disks replace the file disk and its init container;
#  2. the rendered chart is applied server-side with strict field validation;
#  3. three hosts run the DaemonSet's init and main commands with a token of
#     the chart's node ServiceAccount (so its RBAC is what is tested) and the
#     CHAP credential of the chart's Secret: they claim ids 1-3, register,
#     and answer /healthz and /readyz;
#  4. two replicas run the Deployment's command with a token of the
#     controller ServiceAccount: one is active, the other passive and
#     without a CSI socket (so its Pod's sidecars wait), both ready on
#     /readyz (a rollout can replace either); a volume is created;
#  5. host 1's CSI Node service stages, publishes, writes and reads back
#     volumes (e2e/multinode/node_csi_test.c; root only);
#  6. the active replica is stopped (SIGTERM): the passive one serves.
#
# Usage (through e2e/kube/run.sh): chart.sh <tessera> <node-csi-test>.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
T=$(readlink -f "$1") NCT=$(readlink -f "$2")
K=${TS_KUBE_KUBECONFIG:?run through e2e/kube/run.sh} KC=${TS_KUBE_KUBECTL:?}
# shellcheck source=../lib/versions.sh
. "$repo/e2e/lib/versions.sh"
HELM=$HELM_BIN/helm
[ -x "$HELM" ] || { echo "DID NOT RUN: no cached helm ($HELM; e2e/lib/build.sh helm)"; exit 77; }
for t in jq ss python3 curl; do command -v "$t" >/dev/null || { echo "FAIL: $t missing"; exit 1; }; done
python3 -c 'import yaml' 2>/dev/null || { echo "FAIL: python3-yaml missing"; exit 1; }
W=$(mktemp -d /tmp/ts-chart.XXXXXX)
NS=tessera-chart-$$
CLUSTER=unused # common.sh's nodes are not used here
# shellcheck source=../multinode/common.sh
. "$repo/e2e/multinode/common.sh"
declare -A HP=() CPID=()
HPORT=$((PORT + 1)) # the health endpoints, on the same addresses
cleanup() {
	for x in "${!CPID[@]}"; do kill -TERM "${CPID[$x]}" 2>/dev/null; done
	for x in "${!HP[@]}"; do kill -TERM "${HP[$x]}" 2>/dev/null; done
	mn_cleanup
}
kc() { "$KC" --kubeconfig "$K" "$@"; }
render() { # [helm args...]: the chart as release "tessera" in $NS, on stdout
	"$HELM" template tessera "$repo/charts/tessera" --namespace "$NS" --kube-version "$K8S_VERSION" \
		--set image.tag=dev --set iscsiPort="$PORT" --set node.fileDisk.size=192Mi \
		--set controller.memberSize=32Mi --set node.healthPort="$HPORT" \
		--set controller.healthPort="$HPORT" "$@"
}
# q FILE KIND FIELD: a field of the first object of KIND, as JSON
q() {
	python3 - "$@" <<'PY'
import json, sys, yaml
f, kind, field = sys.argv[1:4]
for d in yaml.safe_load_all(open(f)):
    if d and d.get("kind") == kind:
        spec = d["spec"]["template"]["spec"] if kind in ("DaemonSet", "Deployment") else d
        print(json.dumps(eval(field, {}, {"spec": spec, "obj": d})))
        break
PY
}

# --- 1. what the chart renders
"$HELM" lint "$repo/charts/tessera" --strict >"$W/lint.out" 2>&1 || fail "helm lint: $(cat "$W/lint.out")"
render >"$W/chart.yaml"
NODE_CMD=$(q "$W/chart.yaml" DaemonSet 'spec["containers"][0]["command"] + spec["containers"][0]["args"]')
CTL_CMD=$(q "$W/chart.yaml" Deployment 'spec["containers"][0]["command"] + spec["containers"][0]["args"]')
INIT_CMD=$(q "$W/chart.yaml" DaemonSet 'spec["initContainers"][0]["command"]')
jq -e '.[0:2] == ["tessera", "node"] and (index("--id=auto") != null) and (map(select(startswith("--kube-namespace="))) | length == 1) and (map(select(startswith("--csi-endpoint="))) | length == 1)' <<<"$NODE_CMD" >/dev/null ||
	fail "the DaemonSet does not run the node daemon: $NODE_CMD"
jq -e '.[0:2] == ["tessera", "controller"] and (index("--engines=nodes") != null) and (map(select(startswith("--leader-lease="))) | length == 1)' <<<"$CTL_CMD" >/dev/null ||
	fail "the Deployment does not run the controller pair: $CTL_CMD"
for which in node controller; do
	cmd=$([ "$which" = node ] && echo "$NODE_CMD" || echo "$CTL_CMD")
	"$T" "$which" --help >"$W/help-$which" 2>&1 || true
	for flag in $(jq -r '.[2:][] | sub("=.*"; "")' <<<"$cmd"); do
		grep -q -- "$flag[ =]" "$W/help-$which" || fail "the chart passes $flag, which 'tessera $which' does not know"
	done
done
for which in DaemonSet Deployment; do
	q "$W/chart.yaml" "$which" '[e["name"] for e in spec["containers"][0]["env"]]' |
		jq -e 'index("TESSERA_CHAP_USER") != null and index("TESSERA_CHAP_SECRET") != null' >/dev/null ||
		fail "$which has no CHAP credential"
done
uuids() { grep -o -- '--\(cluster\|group\)=[0-9a-f-]*' | sort; }
[ "$(uuids <"$W/chart.yaml")" = "$(render | uuids)" ] || fail "the uuids change between renders"
[ "$(uuids <"$W/chart.yaml")" != "$("$HELM" template other "$repo/charts/tessera" --namespace "$NS" --kube-version "$K8S_VERSION" | uuids)" ] ||
	fail "two releases render the same uuids"
render --set 'node.disks={/dev/sdx,/dev/sdy}' >"$W/disks.yaml"
q "$W/disks.yaml" DaemonSet '[spec.get("initContainers", []), [a for a in spec["containers"][0]["args"] if a.startswith("--disk=")]]' |
	jq -e '. == [[], ["--disk=/dev/sdx", "--disk=/dev/sdy"]]' >/dev/null || fail "raw disks: $(q "$W/disks.yaml" DaemonSet 'spec["containers"][0]["args"]')"
echo "ok: the chart runs tessera node (--id auto, CSI) and the controller pair; every flag known; uuids stable"

# --- 2. applied to the API server, strictly
kc create namespace "$NS" >/dev/null
render --set volumeSnapshotClass.create=false --set volumeGroupSnapshotClass.create=false >"$W/apply.yaml"
kc apply --server-side --field-manager e2e --validate=strict -f "$W/apply.yaml" >"$W/apply.out" 2>&1 ||
	fail "apply: $(cat "$W/apply.out")"
echo "ok: $(grep -c '^kind:' "$W/apply.yaml") objects applied server-side"

# tokens of the chart's ServiceAccounts, as their Pods would have them
sa_kubeconfig() { # $1: service account, $2: file
	local tok server ca
	tok=$(kc -n "$NS" create token "$1" --duration 1h) || fail "token for $1"
	server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	ca=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
	printf 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "%s", certificate-authority: "%s"}}]\ncontexts: [{name: c, context: {cluster: c, user: sa}}]\ncurrent-context: c\nusers: [{name: sa, user: {token: "%s"}}]\n' \
		"$server" "$ca" "$tok" >"$2"
}
sa_kubeconfig tessera-node "$W/node.kubeconfig"
sa_kubeconfig tessera-controller "$W/ctl.kubeconfig"
TESSERA_CHAP_USER=$(kc -n "$NS" get secret tessera-chap -o jsonpath='{.data.user}' | base64 -d)
TESSERA_CHAP_SECRET=$(kc -n "$NS" get secret tessera-chap -o jsonpath='{.data.secret}' | base64 -d)
[ "${#TESSERA_CHAP_SECRET}" = 32 ] || fail "the chart's CHAP secret: '${TESSERA_CHAP_SECRET}'"
export TESSERA_CHAP_USER TESSERA_CHAP_SECRET

# A container's view: the chart's paths mapped into $W/<who>, the downward API by hand.
as_container() { # $1: dir, $2: JSON command; prints it one word a line, mapped
	jq -r '.[]' <<<"$2" | sed -e "1s|^tessera$|$T|" -e "s|/var/lib/tessera|$1|g" -e "s|unix:///csi/csi.sock|unix://$1/csi.sock|" \
		-e "s|--health-addr=0.0.0.0:|--health-addr=${HOST_IP:-$POD_IP}:|" -e "s|\$(NAMESPACE)|$NS|" -e "s|\$(HOST_IP)|$HOST_IP|" -e "s|\$(POD_NAME)|$POD_NAME|" -e "s|\$(POD_IP)|$POD_IP|"
}

# --- 3. three hosts run the DaemonSet's commands
for i in 1 2 3; do
	d=$W/host-$i HOST_IP=127.0.0.7$i POD_NAME= POD_IP=
	mkdir -p "$d"
	mapfile -t init < <(as_container "$d" "$INIT_CMD")
	"${init[@]}" || fail "the init container's command on host $i"
	mapfile -t cmd < <(as_container "$d" "$NODE_CMD")
	NODE_NAME=host-$i "${cmd[@]}" --kubeconfig "$W/node.kubeconfig" >"$W/node$i.out" 2>"$W/node$i.log" &
	HP[$i]=$!
done
for i in 1 2 3; do
	for _ in $(seq 1 600); do
		grep -q "^node=[0-9]* ready csi=unix://$W/host-$i/csi.sock csi_node_id=host-$i\$" "$W/node$i.out" && break
		kill -0 "${HP[$i]}" 2>/dev/null || fail "host $i exited: $(tail -3 "$W/node$i.log")"
		sleep 0.1
	done
	grep -q "^node=[0-9]* ready" "$W/node$i.out" || fail "host $i not ready: $(tail -3 "$W/node$i.log")"
done
ids=$(kc -n "$NS" get configmap tessera-node-ids -o json | jq -c '.data | to_entries | map([.key, .value]) | sort')
[ "$(jq -c '[.[][1]] | sort' <<<"$ids")" = '["1","2","3"]' ] || fail "node ids: $ids"
[ "$(kc -n "$NS" get tesseranodes -o name | wc -l)" = 3 ] || fail "TesseraNodes: $(kc -n "$NS" get tesseranodes -o name)"
for i in 1 2 3; do
	curl -sf "http://127.0.0.7$i:$HPORT/healthz" >/dev/null || fail "host $i /healthz"
	[ "$(curl -sf "http://127.0.0.7$i:$HPORT/readyz")" = ready ] || fail "host $i /readyz"
done
echo "ok: three hosts as the node ServiceAccount: ids $ids, registered, /healthz and /readyz 200"

# --- 4. two controller replicas run the Deployment's command
start_replica() { # $1: 0 or 1
	local d=$W/ctl-$1 HOST_IP= POD_NAME=tessera-controller-$1 POD_IP=127.0.0.8$1
	mkdir -p "$d"
	mapfile -t cmd < <(as_container "$d" "$CTL_CMD")
	"${cmd[@]}" --kubeconfig "$W/ctl.kubeconfig" >"$W/ctl$1.out" 2>"$W/ctl$1.err" &
	CPID[$1]=$!
}
start_replica 0
mn_wait_ready "$W/ctl0.out" "${CPID[0]}" "controller replica 0" 90
start_replica 1
for _ in $(seq 1 100); do grep -q 'passive: Lease' "$W/ctl1.err" && break; sleep 0.1; done
grep -q 'passive: Lease' "$W/ctl1.err" || fail "replica 1 is not passive: $(tail -3 "$W/ctl1.err")"
[ ! -e "$W/ctl-1/csi.sock" ] || fail "the passive replica has a CSI socket: its sidecars would act"
for x in 0 1; do
	curl -sf "http://127.0.0.8$x:$HPORT/healthz" >/dev/null || fail "replica $x /healthz"
	[ "$(curl -sf "http://127.0.0.8$x:$HPORT/readyz")" = ready ] || fail "replica $x /readyz (active and passive are both ready)"
done
export TESSERA_ENDPOINT=unix://$W/ctl-0/csi.sock
"$T" volume create chart-v --size 16Mi -o json >"$W/vol.json" || fail "volume create"
[ "$(kc -n "$NS" get tesseravolumes -o json | jq '[.items[] | select(.spec.name == "chart-v")] | length')" = 1 ] ||
	fail "no TesseraVolume for chart-v"
echo "ok: replica 0 active, replica 1 passive without a socket; a volume made as the controller ServiceAccount"

# --- 5. host 1's CSI Node service (kubelet's side)
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$W/scratch"
	TS_CTL_CSI=$TESSERA_ENDPOINT TS_NODE_CSI=unix://$W/host-1/csi.sock TS_NODE_NAME=host-1 \
		TS_WORK=$W/scratch "$NCT" -j1 --ascii >"$W/nct.out" 2>&1 || { tail -20 "$W/nct.out"; fail "node CSI through the chart's host 1"; }
	echo "ok: host 1's CSI Node service staged, published and read back block and ext4 volumes"
else
	echo "DID NOT RUN (not root): host 1's CSI Node service"
fi

# --- 6. the active replica stops: the passive one serves
kill -TERM "${CPID[0]}"; wait "${CPID[0]}" || fail "replica 0 exited with $? on SIGTERM"; unset 'CPID[0]'
t0=$SECONDS
mn_wait_ready "$W/ctl1.out" "${CPID[1]}" "controller replica 1" 30
export TESSERA_ENDPOINT=unix://$W/ctl-1/csi.sock
"$T" volume list -o json | jq -e '[.volumes[] | select(.name == "chart-v")] | length == 1' >/dev/null ||
	fail "replica 1 does not list chart-v: $("$T" volume list -o json)"
PASSED=1
echo "ok: replica 0 stopped, replica 1 active after $((SECONDS - t0)) s and lists the volume"
