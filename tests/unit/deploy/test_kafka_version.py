"""Compose, the local stack and the Kubernetes manifests run the same Apache Kafka version."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
MAVEN = "{http://maven.apache.org/POM/4.0.0}"


def local_stack_version() -> str:
    """The broker jar deploy/local/stack.py fetches (deploy/local/pom.xml)."""
    pom = ET.parse(ROOT / "deploy" / "local" / "pom.xml").getroot()  # noqa: S314 - our own file
    versions = [
        dependency.findtext(f"{MAVEN}version")
        for dependency in pom.iter(f"{MAVEN}dependency")
        if dependency.findtext(f"{MAVEN}groupId") == "org.apache.kafka"
        and str(dependency.findtext(f"{MAVEN}artifactId")).startswith("kafka_")
    ]
    assert len(versions) == 1 and versions[0], f"expected one Kafka broker dependency in pom.xml, found {versions}"
    return str(versions[0])


def compose_version() -> str:
    image = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]["image"]
    name, _, tag = str(image).partition(":")
    assert name == "apache/kafka" and tag, image
    return tag


def kubernetes_version() -> str:
    documents = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "kafka.yaml").read_text())
    [kafka] = [d for d in documents if d and d["kind"] == "Kafka"]
    return str(kafka["spec"]["kafka"]["version"])


def test_compose_runs_the_local_stacks_kafka_version() -> None:
    assert compose_version() == local_stack_version()


def test_strimzi_runs_the_local_stacks_kafka_version() -> None:
    assert kubernetes_version() == local_stack_version()
    documents = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "kafka.yaml").read_text())
    [kafka] = [d for d in documents if d and d["kind"] == "Kafka"]
    major, minor, _ = local_stack_version().split(".")
    assert str(kafka["spec"]["kafka"]["metadataVersion"]).startswith(f"{major}.{minor}-IV")
