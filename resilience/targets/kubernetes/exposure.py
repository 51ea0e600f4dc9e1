"""How traffic reaches the API and what else may talk to it: Services, Ingress, NetworkPolicies.

`kubernetes.expose` picks how users (and Locust) reach the API:

- `ingress` (default): an Ingress of class `kubernetes.ingress_class`. For `alb`
  (the AWS Load Balancer Controller) it carries the annotations an EKS operator
  needs: `target-type: ip` (the default, `instance`, needs a NodePort Service),
  the scheme (`internal` by default, as the controller's), and the health check
  on `/health/ready`.
- `loadbalancer`: the API Service itself becomes `type: LoadBalancer`, an NLB
  with IP targets through the same controller.
- `cluster-ip`: only the in-cluster Service; give `kubernetes.url` yourself
  (e.g. `kubectl port-forward`).

The NetworkPolicies deny all ingress in the namespace except to the API on its
port, from: the namespace itself, the harness's namespace (the game-day CronJob
runs Locust there), and the load balancer (by `kubernetes.load_balancer_source_cidrs`,
because ALB/NLB IP targets receive traffic from the load balancer's VPC
addresses) or a non-ALB ingress controller's namespace.
"""

from __future__ import annotations

from typing import Any

from ...config import Settings
from .names import (API_PORT, APP_NAME, CNPG_CLUSTER_NAME, EXTERNAL_POSTGRES_SERVICE, EXTERNAL_REDIS_SERVICE,
                    POSTGRES_PORT, REDIS_PORT, REDIS_RELEASE, SENTINEL_PORT, SERVICE_PORT, BackendEndpoints, Manifest,
                    object_meta, selector_labels)

READINESS_PATH = "/health/ready"
# AWS Load Balancer Controller: pods in a namespace with this label get a readiness gate that turns true only
# once the pod is healthy in the load balancer's target group (docs/deploy/pod_readiness_gate.md), so a
# rollout or a drain does not remove old pods before new ones take traffic. Only for IP targets.
ALB_READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"
_ALB = "alb.ingress.kubernetes.io/"
_NLB = "service.beta.kubernetes.io/"


def uses_aws_load_balancer(settings: Settings) -> bool:
    """True when an ALB (Ingress of class alb) or an NLB (LoadBalancer Service) sends traffic to pod IPs."""
    k8s = settings.kubernetes
    return k8s.expose == "loadbalancer" or (k8s.expose == "ingress" and k8s.ingress_class == "alb")


def namespace_labels(settings: Settings) -> dict[str, str]:
    return {ALB_READINESS_GATE_LABEL: "enabled"} if uses_aws_load_balancer(settings) else {}


def service_manifest(settings: Settings) -> Manifest:
    """The API Service: ClusterIP, or an NLB (IP targets) when `kubernetes.expose` is loadbalancer.

    Annotations from the AWS Load Balancer Controller's Service guide
    (kubernetes-sigs.github.io/aws-load-balancer-controller, guide/service/annotations):
    `aws-load-balancer-type: external` hands the Service to that controller,
    `nlb-target-type: ip` targets pod IPs, the scheme defaults to internal.
    """
    k8s = settings.kubernetes
    meta = object_meta(APP_NAME, k8s.namespace)
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": selector_labels(),
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
    }
    if k8s.expose == "loadbalancer":
        spec["type"] = "LoadBalancer"
        meta["annotations"] = {
            f"{_NLB}aws-load-balancer-type": "external",
            f"{_NLB}aws-load-balancer-nlb-target-type": "ip",
            f"{_NLB}aws-load-balancer-scheme": k8s.load_balancer_scheme,
            f"{_NLB}aws-load-balancer-healthcheck-protocol": "http",
            f"{_NLB}aws-load-balancer-healthcheck-path": READINESS_PATH,
        }
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def ingress_manifest(settings: Settings) -> Manifest:
    """networking.k8s.io/v1 Ingress to the API Service; ALB annotations for class alb.

    Annotation defaults (docs/guide/ingress/annotations.md of the controller):
    scheme `internal`, target-type `instance` ("service must be of type NodePort
    or LoadBalancer to use instance mode"), health check path `/`. Our Service is
    ClusterIP, so target-type ip; the health check asks the API's readiness.
    TLS (certificate-arn, listen-ports) is yours to add with `kubectl annotate`:
    server-side apply leaves annotations it does not manage alone.
    """
    k8s = settings.kubernetes
    meta = object_meta(APP_NAME, k8s.namespace)
    if k8s.ingress_class == "alb":
        meta["annotations"] = {
            f"{_ALB}scheme": k8s.load_balancer_scheme,
            f"{_ALB}target-type": "ip",
            f"{_ALB}healthcheck-path": READINESS_PATH,
        }
    rule: dict[str, Any] = {"http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": APP_NAME, "port": {"name": "http"}}},
    }]}}
    if k8s.ingress_host:
        rule = {"host": k8s.ingress_host, **rule}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"ingressClassName": k8s.ingress_class, "rules": [rule]}}


def exposure_manifests(settings: Settings) -> list[Manifest]:
    """The API Service, and the Ingress when `kubernetes.expose` is ingress."""
    result = [service_manifest(settings)]
    if settings.kubernetes.expose == "ingress":
        result.append(ingress_manifest(settings))
    return result


def external_service_manifests(namespace: str, endpoints: BackendEndpoints) -> list[Manifest]:
    """ExternalName Services: stable in-cluster names for the RDS and ElastiCache endpoints."""
    def external(name: str, host: str, component: str) -> Manifest:
        return {"apiVersion": "v1", "kind": "Service", "metadata": object_meta(name, namespace, component),
                "spec": {"type": "ExternalName", "externalName": host}}
    return [external(EXTERNAL_POSTGRES_SERVICE, endpoints.postgres_host, "postgres"),
            external(EXTERNAL_REDIS_SERVICE, endpoints.redis_host, "redis")]


def _namespace_peer(name: str) -> dict[str, Any]:
    # kubernetes.io/metadata.name is set on every namespace by the API server (1.22+)
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def api_ingress_sources(settings: Settings) -> list[dict[str, Any]]:
    """Who may open connections to the API pods (NetworkPolicy `from` peers)."""
    k8s = settings.kubernetes
    sources: list[dict[str, Any]] = [
        {"podSelector": {}},  # the same namespace: in-cluster load generators, port-forward
        _namespace_peer(k8s.harness_namespace),  # the game-day CronJob's Locust
    ]
    if uses_aws_load_balancer(settings):
        # IP targets: the ALB/NLB connects from its own addresses in the VPC, not from a pod
        sources += [{"ipBlock": {"cidr": cidr}} for cidr in k8s.load_balancer_source_cidrs]
    elif k8s.expose == "ingress":
        sources.append(_namespace_peer(k8s.ingress_controller_namespace))
    return sources


def network_policy_manifests(settings: Settings, backing: str = "external") -> list[Manifest]:
    """Default-deny ingress; the API accepts the sources above; API egress to DNS, database and cache only."""
    namespace = settings.kubernetes.namespace
    api_pods = {"matchLabels": selector_labels()}
    deny = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": object_meta("default-deny-ingress", namespace, "network-policy"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    allow_in = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": object_meta("school-meals-api-ingress", namespace, "network-policy"),
        "spec": {
            "podSelector": api_pods,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": api_ingress_sources(settings), "ports": [{"protocol": "TCP", "port": API_PORT}]}],
        },
    }
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    if backing == "in-cluster":
        data_rules: list[dict[str, Any]] = [
            {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": CNPG_CLUSTER_NAME}}}],
             "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": REDIS_RELEASE}}}],
             "ports": [{"protocol": "TCP", "port": REDIS_PORT}, {"protocol": "TCP", "port": SENTINEL_PORT}]},
        ]
    else:  # RDS / ElastiCache addresses are outside the cluster and change on failover: restrict by port
        data_rules = [{"ports": [{"protocol": "TCP", "port": POSTGRES_PORT}, {"protocol": "TCP", "port": REDIS_PORT}]}]
    allow_out = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": object_meta("school-meals-api-egress", namespace, "network-policy"),
        "spec": {"podSelector": api_pods, "policyTypes": ["Egress"], "egress": [dns, *data_rules]},
    }
    return [deny, allow_in, allow_out]
