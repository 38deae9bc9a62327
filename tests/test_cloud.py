"""The cloud probe against loopback metadata servers that speak each provider's protocol."""

from __future__ import annotations

import time

import pytest

from agent.collect import cloud
from agent.collect.cloud import CloudInfo
from agent.lifecycle.facts import cloud_details_body
from tests.fakes.cloud_metadata import MetadataServer


def test_aws_imdsv2() -> None:
    """AWS: a token from PUT, then the instance type and placement with that token."""
    with MetadataServer("aws") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("AWS", "p5.48xlarge", "us-east-1", "us-east-1a")
    assert cloud_details_body(found) == {
        "provider": "AWS",
        "metadata": {"instanceType": "p5.48xlarge", "region": "us-east-1", "zone": "us-east-1a"},
    }
    assert found.facts() == [("cloud_provider", "AWS"), ("cloud_instance_type", "p5.48xlarge")]
    assert ("PUT", "/latest/api/token") in [(m, p) for m, p, _ in srv.seen]


def test_gcp_machine_type() -> None:
    """GCP: the machine type and zone, the region taken from the zone."""
    with MetadataServer("gcp") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("GCP", "a2-highgpu-8g", "us-central1", "us-central1-b")


def test_azure_vm_size() -> None:
    """Azure: one JSON answer with the VM size, location and zone."""
    with MetadataServer("azure") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("Azure", "Standard_ND96asr_v4", "eastus", "2")


def test_no_metadata_service() -> None:
    """A server that answers 404 to everything, or nothing listening: no cloud."""
    with MetadataServer("none") as srv:
        assert cloud.probe(srv.url) is None
        closed = srv.url
    assert cloud.probe(closed) is None


def test_silent_service_is_cut_at_the_budget() -> None:
    """A metadata address that never answers costs at most the budget."""
    with MetadataServer("aws", delay_s=5) as srv:
        start = time.monotonic()
        assert cloud.probe(srv.url, budget_s=0.3) is None
        elapsed = time.monotonic() - start
    assert elapsed < 1.0


def test_proxy_settings_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadata service is asked directly even when a proxy is configured."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with MetadataServer("aws") as srv:
        assert cloud.probe(srv.url) == CloudInfo("AWS", "p5.48xlarge", "us-east-1", "us-east-1a")


def test_only_http_urls() -> None:
    """The probe refuses anything but plain http (no file: or custom schemes)."""
    with pytest.raises(ValueError, match="must be http://"):
        cloud.probe("file:///etc/passwd")
