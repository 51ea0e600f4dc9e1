#!/usr/bin/env bash
# The contract suite (tests/contract) against a real cluster on this machine: kind.
#
#   bash deploy/kind/run-contract.sh          (needs docker, kind and kubectl; the tests themselves run through
#                                               scripts/test.sh, which installs the project and needs root/sudo)
#
# 1. creates the kind cluster `resilience` (context kind-resilience) from deploy/kind/kind-config.yaml:
#    a control plane and three workers labelled topology.kubernetes.io/zone=zone-a/b/c (kept if it exists);
# 2. installs metrics-server (--kubelet-insecure-tls: kind's kubelets serve self-signed certificates), so
#    the HPA has CPU and memory readings, and ingress-nginx on the control plane (port 80 on this host);
# 3. builds the API image from the repository's Dockerfile (at the repository root; it comes with the
#    EKS manifests work) and loads it, and the images of PostgreSQL, Redis and pause, into the nodes;
# 4. deploys PostgreSQL and Redis (deploy/kind/backends.yaml) with generated credentials, creates the
#    platform's namespace with the Secret school-meals-db-credentials (as an operator does before
#    `resilience up`; the Ingress, class nginx, comes with the platform's manifests), and writes the
#    settings file $WORK/resilience.yaml (deploy/kind/resilience-kind.yaml: only kind-resilience is allowed);
# 5. runs `bash scripts/test.sh tests/contract` with RESILIENCE_CONTRACT_CONTEXT=kind-resilience.
#
# Environment: RESILIENCE_KIND_WORKDIR (default $TMPDIR/resilience-kind-contract, called $WORK here: the
# settings, the generated database password, and the run directories in $WORK/reports);
# RESILIENCE_KIND_KEEP=1 keeps a cluster this script created (default: deleted on exit; a cluster that
# existed before is never deleted); KIND_NODE_IMAGE picks the node image (default: kind's own for its
# version). Versions of what is installed from the network are pinned below.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=resilience                     # the context is kind-$CLUSTER, the one deploy/kind/resilience-kind.yaml allows
CONTEXT="kind-${CLUSTER}"
API_IMAGE=school-meals-api:contract    # kubernetes.image in deploy/kind/resilience-kind.yaml
PAUSE_IMAGE=registry.k8s.io/pause:3.10
PRELOADED_IMAGES=(postgres:15-alpine redis:7-alpine "$PAUSE_IMAGE")
METRICS_SERVER_VERSION=v0.7.2
# ingress-nginx's own kind manifest; the project is retired (no releases after March 2026) but its
# published manifests and images still work for a test cluster; any controller that runs in the
# `ingress-nginx` namespace and writes the Ingress status will do.
INGRESS_NGINX_VERSION=controller-v1.12.1
NAMESPACE=school-meals                 # kubernetes.namespace
BACKENDS_NAMESPACE=rsl-contract-backends
WORK="${RESILIENCE_KIND_WORKDIR:-${TMPDIR:-/tmp}/resilience-kind-contract}"
export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"   # absolute: scripts/test.sh may re-run itself via sudo -E

say() { printf 'run-contract: %s\n' "$*" >&2; }
k() { kubectl --context "$CONTEXT" "$@"; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { say "needs $tool on PATH"; exit 2; }
done
if [ ! -f Dockerfile ]; then
  say "no Dockerfile at the repository root: the API image (kubernetes.image) is built from it. It is part of" \
      "the EKS manifests work; until it lands, build an image of the API yourself and tag it $API_IMAGE."
  exit 2
fi

created=0
cleanup() {
  if [ "$created" = 1 ] && [ "${RESILIENCE_KIND_KEEP:-0}" != "1" ]; then
    say "deleting the kind cluster $CLUSTER (RESILIENCE_KIND_KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}

# -- 1. the cluster ------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "kind cluster $CLUSTER exists: using it"
else
  say "creating kind cluster $CLUSTER (1 control plane, 3 workers in zone-a/b/c)"
  create=(kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait 180s)
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then
    create+=(--image "$KIND_NODE_IMAGE")
  fi
  trap cleanup EXIT
  created=1
  "${create[@]}"
fi
k get nodes -L topology.kubernetes.io/zone

# -- 2. metrics-server and the ingress controller --------------------------------------------------
say "installing metrics-server $METRICS_SERVER_VERSION"
k apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"
if ! k -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' \
    | grep -q -- '--kubelet-insecure-tls'; then
  k -n kube-system patch deployment metrics-server --type=json \
    -p='[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--kubelet-insecure-tls"}]'
fi
k -n kube-system rollout status deployment/metrics-server --timeout=300s

say "installing ingress-nginx ($INGRESS_NGINX_VERSION) on the control plane"
k apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml"
# on the node whose port 80 is published (kind-config.yaml), never on a worker that a zone loss cordons
k -n ingress-nginx patch deployment ingress-nginx-controller --type=merge \
  -p '{"spec": {"template": {"spec": {"nodeSelector": {"ingress-ready": "true", "kubernetes.io/os": "linux"}}}}}'
k -n ingress-nginx rollout status deployment/ingress-nginx-controller --timeout=300s

# -- 3. images -------------------------------------------------------------------------------------
say "building $API_IMAGE from ./Dockerfile"
docker build -t "$API_IMAGE" .
for image in "${PRELOADED_IMAGES[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image"
done
kind load docker-image --name "$CLUSTER" "$API_IMAGE" "${PRELOADED_IMAGES[@]}"

# -- 4. the database, the namespace, its Secret and Ingress, the settings ----------------------------
mkdir -p "$WORK/reports"
chmod 700 "$WORK"
password_file="$WORK/db-password"
if [ ! -s "$password_file" ]; then
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$password_file")  # hex: URL-safe in the DSN
fi
secret() {  # secret NAMESPACE NAME: username app, the generated password (applied: safe to run again)
  k -n "$1" create secret generic "$2" --from-literal=username=app --from-file=password="$password_file" \
    --dry-run=client -o yaml | k apply -f -
}
k apply -f deploy/kind/backends.yaml
secret "$BACKENDS_NAMESPACE" contract-db
k -n "$BACKENDS_NAMESPACE" rollout status deployment/postgres --timeout=300s
k -n "$BACKENDS_NAMESPACE" rollout status deployment/redis --timeout=300s

# the platform's namespace exists before `up` (so `up` adopts it and `down` leaves it), with what the
# operator provides: the database credentials
k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f -
secret "$NAMESPACE" school-meals-db-credentials
# the controller's admission webhook must answer before `up` applies the Ingress
k -n ingress-nginx wait --for=condition=complete job --all --timeout=300s

{
  cat deploy/kind/resilience-kind.yaml
  printf 'evidence:\n  reports_dir: %s\n' "$WORK/reports"
} > "$WORK/resilience.yaml"

# -- 5. the contract suite ---------------------------------------------------------------------------
export RESILIENCE_CONFIG="$WORK/resilience.yaml"
export RESILIENCE_CONTRACT_CONTEXT="$CONTEXT"
export RESILIENCE_CONTRACT_POSTGRES_HOST="postgres.${BACKENDS_NAMESPACE}.svc.cluster.local"
export RESILIENCE_CONTRACT_REDIS_HOST="redis.${BACKENDS_NAMESPACE}.svc.cluster.local"
export RESILIENCE_CONTRACT_PAUSE_IMAGE="$PAUSE_IMAGE"
export RESILIENCE_CONTRACT_REPORTS="$WORK/reports"
say "running the contract suite against $CONTEXT (settings: $RESILIENCE_CONFIG)"
bash scripts/test.sh tests/contract
