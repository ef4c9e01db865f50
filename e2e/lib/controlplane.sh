# SPDX-License-Identifier: Apache-2.0
# The pieces of a Kubernetes control plane on this machine as processes, for
# every harness that starts one (e2e/run.sh, e2e/kube/run.sh): a PKI, the
# kubeconfigs, and the etcd and kube-apiserver command lines. Sourced; it
# starts nothing itself (each harness has its own process bookkeeping).
#
#   cp_pki DIR LOG                   CA, apiserver serving cert (127.0.0.1), SA keys
#   cp_cert DIR LOG NAME SUBJ [SAN]  a cert signed by DIR's CA (client-only without SAN)
#   cp_kubeconfig FILE SERVER CA USER CERT KEY | FILE SERVER CA USER --token TOKEN
#   cp_etcd_cmd NAME DATADIR PORT PEERPORT      -> array CP_ETCD_CMD
#   cp_apiserver_cmd KAPI PKIDIR ETCDPORT PORT AUTHZ [extra args...]
#                                    -> array CP_APISERVER_CMD
#   cp_free_port_base N              a base B with B..B+N-1 free on loopback (stdout)

cp_ossl() { local log=$1; shift; openssl "$@" 2>>"$log"; }

cp_pki() { # dir log
  local pki=$1 log=$2
  mkdir -p "$pki"
  cp_ossl "$log" req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 2 -subj "/CN=tessera-e2e-ca" &&
    cp_cert "$pki" "$log" apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1" &&
    cp_ossl "$log" genrsa -out "$pki/sa.key" 2048 &&
    cp_ossl "$log" rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
}

cp_cert() { # dir log name subject [san]
  local pki=$1 log=$2 name=$3 subj=$4 san=${5:-}
  cp_ossl "$log" req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj" || return 1
  local ext=$pki/$name.ext
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$ext"
  fi
  cp_ossl "$log" x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 2 -extfile "$ext"
}

cp_kubeconfig() { # file server ca user cert key | file server ca user --token TOKEN
  local f=$1 server=$2 ca=$3 user=$4
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters: [{name: e2e, cluster: {server: \"$server\", certificate-authority: \"$ca\"}}]"
    echo "contexts: [{name: e2e, context: {cluster: e2e, user: $user}}]"
    echo "current-context: e2e"
    if [ "$5" = --token ]; then
      echo "users: [{name: $user, user: {token: \"$6\"}}]"
    else
      echo "users: [{name: $user, user: {client-certificate: \"$5\", client-key: \"$6\"}}]"
    fi
  } >"$f"
}

cp_etcd_cmd() { # name datadir port peerport
  CP_ETCD_CMD=(etcd --name "$1" --data-dir "$2"
    --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3"
    --listen-peer-urls "http://127.0.0.1:$4" --initial-advertise-peer-urls "http://127.0.0.1:$4"
    --initial-cluster "$1=http://127.0.0.1:$4" --unsafe-no-fsync)
}

cp_apiserver_cmd() { # kapi pkidir etcdport port authz [extra...]
  local kapi=$1 pki=$2 etcd=$3 port=$4 authz=$5
  shift 5
  CP_APISERVER_CMD=("$kapi" --etcd-servers "http://127.0.0.1:$etcd"
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none
    --secure-port "$port"
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key"
    --client-ca-file "$pki/ca.crt" --authorization-mode "$authz" --allow-privileged=true
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub"
    --service-account-signing-key-file "$pki/sa.key" --service-cluster-ip-range 10.96.0.0/24
    --api-audiences https://kubernetes.default.svc --profiling=false "$@" --v=1)
}

cp_free_port_base() { # n
  local n=$1 b p busy tries
  for tries in $(seq 50); do
    b=$((20000 + RANDOM % 20000))
    busy=0
    for ((p = b; p < b + n; p++)); do
      if grep -q . <<<"$(ss -Htan "sport = :$p" 2>/dev/null)"; then busy=1; break; fi
    done
    [ "$busy" = 0 ] && { echo "$b"; return 0; }
  done
  return 1
}
