"""The kubernetes/aws settings the EKS manifests use: defaults, YAML types, and every refusal naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resilience.config import Settings, defaults_yaml, load_settings
from resilience.errors import UserError


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "resilience.yaml"
    path.write_text(text)
    return load_settings(path)


def test_defaults_and_round_trip(tmp_path: Path) -> None:
    settings = load(tmp_path, defaults_yaml())
    k8s, aws = settings.kubernetes, settings.aws
    assert (k8s.url, k8s.expose, k8s.ingress_class, k8s.load_balancer_scheme) == (None, "ingress", "alb", "internal")
    assert (k8s.hpa_scale_down_stabilization_s, k8s.hpa_scale_up_stabilization_s) == (None, None)
    assert k8s.harness_namespace == "school-meals-chaos" and aws.elasticache_tls is True


def test_settings_from_yaml(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml.safe_dump({
        "kubernetes": {"url": "https://meals.example.com:8443/api", "expose": "loadbalancer",
                       "load_balancer_scheme": "internet-facing", "load_balancer_source_cidrs": ["10.20.0.0/16"],
                       "hpa_scale_down_stabilization_s": 60, "hpa_scale_up_stabilization_s": 0,
                       "ingress_host": "meals.example.com"},
        "aws": {"elasticache_tls": False}}))
    k8s = settings.kubernetes
    assert k8s.url == "https://meals.example.com:8443/api" and k8s.expose == "loadbalancer"
    assert (k8s.hpa_scale_down_stabilization_s, k8s.hpa_scale_up_stabilization_s) == (60, 0)
    assert k8s.load_balancer_source_cidrs == ("10.20.0.0/16",)
    assert settings.aws.elasticache_tls is False


@pytest.mark.parametrize("kubernetes", [
    {"url": "ftp://meals.example.com"},
    {"url": "meals.example.com"},
    {"url": "https://"},
    {"url": "https://meals.example.com:99999"},
    {"url": "https://user:secret@meals.example.com"},
    {"url": "https://token@meals.example.com"},
    {"url": 8080},
    {"expose": "nodeport"},
    {"load_balancer_scheme": "public"},
    {"ingress_class": "ALB Controller"},
    {"ingress_host": "https://meals.example.com"},
    {"harness_namespace": "Chaos_NS"},
    {"ingress_controller_namespace": ""},
    {"load_balancer_source_cidrs": ["10.0.0.1/8"]},
    {"load_balancer_source_cidrs": ["vpc"]},
    {"load_balancer_source_cidrs": []},
    {"hpa_scale_down_stabilization_s": 3601},
    {"hpa_scale_up_stabilization_s": -1},
    {"hpa_scale_down_stabilization_s": "5m"},
    {"hpa_scale_down_stabilization_s": 1.5},
    {"load_generator": "remote"},
    {"load_generator": True},
    {"load_image": "school meals:latest"},
    {"load_image": "registry.example/api;rm -rf"},
    {"load_image": 5},
    {"load_start_timeout_s": 5},
    {"load_start_timeout_s": ".inf"},
])
def test_bad_values_name_the_setting(tmp_path: Path, kubernetes: dict[str, object]) -> None:
    field = f"kubernetes.{next(iter(kubernetes))}"
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load(tmp_path, yaml.safe_dump({"kubernetes": kubernetes}))


@pytest.mark.parametrize("url", ["https://user:hunter2@meals.example.com", "ftp://user:hunter2@meals.example.com",
                                 "https://user:hunter2@meals.example.com:99999"])
def test_url_refusal_does_not_echo_the_credentials(tmp_path: Path, url: str) -> None:
    with pytest.raises(UserError) as info:
        load(tmp_path, yaml.safe_dump({"kubernetes": {"url": url}}))
    assert "hunter2" not in str(info.value)


def test_no_source_cidrs_is_fine_when_no_aws_load_balancer_is_used(tmp_path: Path) -> None:
    for kubernetes in ({"expose": "cluster-ip"}, {"ingress_class": "nginx"}):
        settings = load(tmp_path, yaml.safe_dump({"kubernetes": {**kubernetes, "load_balancer_source_cidrs": []}}))
        assert settings.kubernetes.load_balancer_source_cidrs == ()


def test_elasticache_tls_is_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"aws\.elasticache_tls"):
        load(tmp_path, yaml.safe_dump({"aws": {"elasticache_tls": "yes"}}))
