"""The chart's model-release wiring: model versions copied in by init containers from model images
(no server image rebuild), the release state from an optional ConfigMap, both read-only to the server."""

from __future__ import annotations

from helm_render import find, load_docs, render, template


def backend_pod(docs):
    (deployment,) = find(docs, "Deployment", component="backend")
    return deployment["spec"]["template"]["spec"]


def test_versions_are_copied_by_init_containers_into_a_read_only_folder():
    spec = backend_pod(render("releases"))
    inits = spec["initContainers"]
    assert [c["image"] for c in inits] == ["vision-ai-model-mnist:2026.12.06-03007b93",
                                           "vision-ai-model-mnist:2026.12.06-446ad36c"]
    assert inits[0]["command"][-1] == "/versions/mnist/2026.12.06-03007b93"
    assert all(c["volumeMounts"] == [{"name": "model-versions", "mountPath": "/versions"}] for c in inits)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["model-versions"]
    assert volumes["release-state"]["configMap"] == {"name": "vision-ai-releases", "optional": True}
    backend = spec["containers"][0]
    mounts = {m["name"]: m for m in backend["volumeMounts"]}
    assert mounts["release-state"]["readOnly"] and mounts["model-versions"]["readOnly"]
    env = {e["name"]: e.get("value") for e in backend["env"]}
    assert env["VISION_RELEASES_DIR"] == mounts["release-state"]["mountPath"]
    assert env["VISION_VERSIONS_DIR"] == mounts["model-versions"]["mountPath"]


def test_default_has_the_mounts_but_no_init_container():
    spec = backend_pod(render("default"))
    assert "initContainers" not in spec
    assert {"release-state", "model-versions"} <= {v["name"] for v in spec["volumes"]}


def test_releases_off_mounts_nothing():
    docs = load_docs(template(set_values=["releases.enabled=false"]).stdout)
    spec = backend_pod(docs)
    assert {v["name"] for v in spec["volumes"]} == {"tmp"}
    assert not any(e["name"].startswith("VISION_RELEASES") for e in spec["containers"][0]["env"])
