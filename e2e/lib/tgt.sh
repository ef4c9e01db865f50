# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# tgt (the Linux SCSI target daemon) as a private iSCSI peer for tests and
# benchmarks. Source this file, then:
#
#   tgt_start DIR [PORT]          start tgtd in the foreground on 127.0.0.1 with
#                                 a free iSCSI port (or PORT: a restart on the
#                                 same portal) and its own control port;
#                                 state (pid, ports, log) lives in DIR, and
#                                 DIR/tgt.env holds TGT_PID TGT_PORT TGT_CTL
#   tgt_target TID IQN FILE [BS]  target TID named IQN, LUN 1 backed by FILE
#                                 (block size BS, default 512), open to any
#                                 initiator address
#   tgt_chap TID USER SECRET      require CHAP: the initiator proves USER/SECRET
#   tgt_chap_mutual TID USER SECRET
#                                 mutual CHAP: the target proves USER/SECRET
#   tgt_thin TID                  thin provisioning on LUN 1 (UNMAP, LBPME, LBPRZ)
#   tgt_url IQN [LUN]             iscsi://127.0.0.1:PORT/IQN/LUN
#   tgt_load DIR                  load TGT_* from DIR/tgt.env (another shell)
#   tgt_stop                      kill tgtd (SIGKILL, see below); idempotent
#
# Several instances can run at once (each has its own control port and
# socket under /var/run/tgtd). Needs root. All functions return non-zero on
# failure and print why on stderr.

tgt_adm() {
	tgtadm -C "$TGT_CTL" --lld iscsi "$@"
}

tgt_port_free() {
	! grep -q . <<<"$(ss -Hltn "sport = :$1" 2>/dev/null)"
}

tgt_start() {
	local dir=$1 want=${2:-} try port ctl pid i
	[ -n "$dir" ] || { echo "tgt_start: DIR missing" >&2; return 1; }
	mkdir -p "$dir"
	command -v tgtd >/dev/null || { echo "tgt_start: tgtd not installed (Debian package tgt)" >&2; return 1; }
	for try in 1 2 3 4 5 6 7 8; do
		port=${want:-$((20000 + RANDOM % 20000))}
		ctl=$((1000 + RANDOM % 30000))
		tgt_port_free "$port" || continue
		[ -e "/var/run/tgtd/socket.$ctl" ] && continue
		tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$port" >"$dir/tgtd.log" 2>&1 &
		pid=$!
		for i in $(seq 1 50); do
			tgt_alive "$pid" || break
			if ! tgt_port_free "$port" && tgtadm -C "$ctl" --mode sys --op show >/dev/null 2>&1; then
				TGT_PID=$pid TGT_PORT=$port TGT_CTL=$ctl TGT_DIR=$dir
				printf 'TGT_PID=%s\nTGT_PORT=%s\nTGT_CTL=%s\nTGT_DIR=%s\n' \
					"$pid" "$port" "$ctl" "$dir" >"$dir/tgt.env"
				return 0
			fi
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "tgt_start: tgtd did not come up; log:" >&2
	cat "$dir/tgtd.log" >&2
	return 1
}

tgt_load() {
	# shellcheck disable=SC1091
	. "$1/tgt.env"
}

tgt_target() {
	local tid=$1 iqn=$2 file=$3 bs=${4:-512}
	tgt_adm --mode target --op new --tid "$tid" --targetname "$iqn" &&
	tgt_adm --mode logicalunit --op new --tid "$tid" --lun 1 --backing-store "$file" \
		--blocksize "$bs" &&
	tgt_adm --mode target --op bind --tid "$tid" --initiator-address ALL
}

tgt_chap() {
	local tid=$1 user=$2 secret=$3
	tgt_adm --mode account --op new --user "$user" --password "$secret" &&
	tgt_adm --mode account --op bind --tid "$tid" --user "$user"
}

tgt_chap_mutual() {
	local tid=$1 user=$2 secret=$3
	tgt_adm --mode account --op new --user "$user" --password "$secret" &&
	tgt_adm --mode account --op bind --tid "$tid" --user "$user" --outgoing
}

tgt_url() {
	echo "iscsi://127.0.0.1:$TGT_PORT/$1/${2:-1}"
}

# tgtd ignores SIGTERM and SIGINT, and has no state of its own worth a clean
# shutdown (LUN data goes straight to the backing file), so it is killed.
tgt_alive() {
	[ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"
}

tgt_stop() {
	local i
	[ -n "${TGT_PID:-}" ] || return 0
	kill -KILL "$TGT_PID" 2>/dev/null || true
	for i in $(seq 1 50); do
		tgt_alive "$TGT_PID" || break
		sleep 0.1
	done
	{ wait "$TGT_PID"; } 2>/dev/null || true # also hides bash's "Killed" notice
	rm -f "/var/run/tgtd/socket.$TGT_CTL" "/var/run/tgtd/socket.$TGT_CTL.lock"
	if [ -n "${TGT_DIR:-}" ]; then rm -f "$TGT_DIR/tgt.env"; fi
	TGT_PID=
	return 0
}

# Thin provisioning on LUN 1 of TID: UNMAP supported, LBPME=1 LBPRZ=1.
tgt_thin() {
	tgt_adm --mode logicalunit --op update --tid "$1" --lun 1 --params thin_provisioning=1
}
