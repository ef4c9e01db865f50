#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Command-line face of e2e/lib/tgt.sh, for programs (C tests) that cannot
# source it. State lives in DIR between calls.
#   tgt-ctl.sh start DIR [PORT]           prints TGT_PORT=...
#   tgt-ctl.sh target DIR TID IQN FILE [BS]
#   tgt-ctl.sh chap DIR TID USER SECRET
#   tgt-ctl.sh chap-mutual DIR TID USER SECRET
#   tgt-ctl.sh thin DIR TID
#   tgt-ctl.sh stop DIR
set -uo pipefail
# shellcheck source=e2e/lib/tgt.sh
. "$(dirname "$0")/tgt.sh"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: tgt-ctl.sh start|target|chap|chap-mutual|stop DIR ..." >&2; exit 2; }
shift 2
case $cmd in
start) tgt_start "$dir" "$@" && cat "$dir/tgt.env" ;;
target) tgt_load "$dir" && tgt_target "$@" ;;
chap) tgt_load "$dir" && tgt_chap "$@" ;;
thin) tgt_load "$dir" && tgt_thin "$@" ;;
chap-mutual) tgt_load "$dir" && tgt_chap_mutual "$@" ;;
stop) [ -f "$dir/tgt.env" ] || exit 0; tgt_load "$dir" && tgt_stop ;;
*) echo "tgt-ctl.sh: unknown command $cmd" >&2; exit 2 ;;
esac
