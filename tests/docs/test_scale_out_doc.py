"""docs/scale-out.md: its Kubernetes recipe is valid YAML of the shape it claims."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def _manifests() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    return [m for m in yaml.safe_load_all(blocks[0]) if m is not None]


def test_the_kubernetes_recipe_parses_and_fits_together() -> None:
    by_kind = {m["kind"]: m for m in _manifests()}
    assert set(by_kind) == {"Secret", "Service", "StatefulSet"}
    secret, service, sts = by_kind["Secret"], by_kind["Service"], by_kind["StatefulSet"]
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    # /global/health needs the password: the probes check the port.
    assert set(container["readinessProbe"]) >= {"tcpSocket"}
    assert set(container["livenessProbe"]) >= {"tcpSocket"}
    env = {e["name"]: e for e in container["env"]}
    ref = env["OPENCODE_SERVER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    port = container["ports"][0]["containerPort"]
    assert service["spec"]["ports"][0]["port"] == port
    assert f"--port {port}" in " ".join(container["args"])


def test_the_remote_add_loop_uses_the_pod_names() -> None:
    text = DOC.read_text()
    name = next(m for m in _manifests() if m["kind"] == "StatefulSet")["metadata"]["name"]
    assert f"http://{name}-$i.{name}.default.svc.cluster.local:4096" in text
