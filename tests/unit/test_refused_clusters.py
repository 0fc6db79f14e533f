"""Failure isolation on a node: a cluster the agent cannot build is refused on its own, with the
field and the fix, and never keeps the node's other clusters from starting.

The clusters are built as the agent builds them (`resolve`, `ChainRunner` with the
environment its command line gives); nothing runs and nothing is asked of the API server.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tandem.api.hacluster import HAClusterSpec, IneligibleReason, NodeReport
from tandem_agent.__main__ import (
    Refusal,
    clusters_of,
    node_environment,
    parse_args,
    prepare,
    refusal_report,
    resolve,
)
from tandem_agent.chain import ChainRunner
from tandem_agent.invalid import InvalidSpec, problem_of

NODES = [
    {"name": "mail1", "replicationAddress": "198.19.0.201"},
    {"name": "mail2", "replicationAddress": "198.19.0.202"},
]
MOUNT = {"volume": "mail-store", "mountPoint": "/srv/mail", "fsType": "ext4"}


def obj(name: str, spec: dict[str, Any], namespace: str = "a", generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": generation},
        "spec": spec,
    }


def hac(name: str, **chain: Any) -> dict[str, Any]:
    return obj(name, {"nodes": NODES, "chain": chain})


def world(*clusters: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    volume = obj(
        "mail-store",
        {
            "cluster": "mail",
            "resourceName": "mail-store",
            "minor": 0,
            "port": 7789,
            "nodes": [
                {"name": "mail1", "disk": "/dev/vg0/mail", "address": "198.19.0.201", "nodeId": 0},
                {"name": "mail2", "disk": "/dev/vg0/mail", "address": "198.19.0.202", "nodeId": 1},
            ],
            "quorum": {"mode": "off"},
        },
    )
    fips = [
        obj(
            "mail-vips",
            {"cluster": "mail", "addresses": [{"start": "198.18.0.2"}], "prefixLength": 24, "interface": "mgmt"},
        ),
        obj(
            "backwards",
            {
                "cluster": "vips",
                "prefixLength": 24,
                "interface": "mgmt",
                "addresses": [{"start": "198.18.0.9", "end": "198.18.0.2"}],
            },
        ),
    ]
    return {"haclusters": list(clusters), "drbdvolumes": [volume], "floatingips": fips}


MAIL = hac(
    "mail",
    volumes=["mail-store"],
    mounts=[MOUNT],
    floatingIPs=["mail-vips"],
    postgres={"credentialsSecret": "mail-pg"},
    services=[{"name": "postfix", "unit": "postfix.service"}],
)


def builder(tmp_path: Path, w: dict[str, list[dict[str, Any]]], *flags: str) -> Any:
    env = node_environment(
        parse_args(["--node", "mail1", "--state-dir", str(tmp_path), *flags]), lambda namespace, name: None
    )
    return lambda o: ChainRunner(resolve(o, w), env)


def test_a_cluster_the_node_cannot_build_never_keeps_the_good_one_from_starting(tmp_path: Path) -> None:
    spare = hac("spare", mounts=[MOUNT])  # another cluster's volume, not in its own chain
    vips = hac("vips", floatingIPs=["backwards"])
    ghost = hac("ghost", volumes=["ghost-store"])
    w = world(spare, vips, ghost, hac("boom"), MAIL)
    build = builder(tmp_path, w)

    def built_or_boom(o: dict[str, Any]) -> Any:
        if o["metadata"]["name"] == "boom":
            raise RuntimeError("a bug")
        return build(o)

    built, refused = prepare(clusters_of(w, "mail1"), w, running=(), refused={}, build=built_or_boom)

    assert list(built) == ["a/mail"]
    assert isinstance(built["a/mail"], ChainRunner)
    problems = {key: r.problem for key, r in refused.items()}
    assert problems["a/spare"] == (
        "spec.chain.mounts[0].volume: DRBDVolume mail-store is not in spec.chain.volumes: add it there"
    )
    assert problems["a/vips"].startswith("spec.chain.floatingIPs[0]: FloatingIP backwards: ")
    assert problems["a/ghost"] == (
        "spec.chain.volumes[0]: DRBDVolume ghost-store does not "
        "exist in namespace a: create it or remove it from the chain"
    )
    assert problems["a/boom"] == ("spec: the agent cannot build this cluster's chain: RuntimeError: a bug")


def test_clusters_of_other_nodes_and_running_ones_are_not_built(tmp_path: Path) -> None:
    elsewhere = obj("elsewhere", {"nodes": [{"name": "crm1"}, {"name": "crm2"}]})
    w = world(MAIL, elsewhere, hac("spare", mounts=[MOUNT]))
    built, refused = prepare(clusters_of(w, "mail1"), w, running={"a/mail"}, refused={}, build=builder(tmp_path, w))
    assert built == {} and list(refused) == ["a/spare"]


def test_a_refused_cluster_is_built_again_only_when_its_inputs_change(tmp_path: Path) -> None:
    w = world(hac("spare", mounts=[MOUNT]))
    calls: list[str] = []
    build = builder(tmp_path, w)

    def counted(o: dict[str, Any]) -> Any:
        calls.append(o["metadata"]["name"])
        return build(o)

    def again(refused: dict[str, Refusal]) -> dict[str, Refusal]:
        return prepare(clusters_of(w, "mail1"), w, (), refused, counted)[1]

    refused = again({})
    assert again(refused) == refused and calls == ["spare"]
    w["drbdvolumes"].append(obj("other", {}, namespace="b"))  # another namespace's
    assert again(refused) == refused and calls == ["spare"]
    w["drbdvolumes"].append(obj("spare-store", {}))  # may be the one it names
    refused = again(refused)
    assert calls == ["spare", "spare"]
    fixed = copy.deepcopy(w["haclusters"][0])
    fixed["metadata"]["generation"] = 2
    fixed["spec"]["chain"]["volumes"] = ["mail-store"]
    w["haclusters"][0] = fixed
    built, refused = prepare(clusters_of(w, "mail1"), w, (), refused, counted)
    assert list(built) == ["a/spare"] and refused == {}


def test_postgres_values_name_the_field_they_come_from(tmp_path: Path) -> None:
    # A replication address the API refuses (isIP) but the agent's model does not check:
    # PostgresConfig refuses it, and the spec field is named.
    w = world(
        hac("pg", postgres={}),
        obj(
            "old",
            {
                "nodes": [
                    {"name": "mail1", "replicationAddress": "198.19.0.201"},
                    {"name": "mail2", "replicationAddress": "not-an-ip"},
                ],
                "chain": {"postgres": {}},
            },
        ),
    )
    _, refused = prepare(clusters_of(w, "mail1"), w, (), {}, builder(tmp_path, w))
    assert refused["a/old"].problem == (
        "spec.nodes[*].replicationAddress: replication_peers: 'not-an-ip' is not an IP address"
    )
    assert "a/pg" not in refused
    _, refused = prepare(clusters_of(w, "mail1"), w, (), {}, builder(tmp_path, w, "--pg-data-dir", "/srv/pg data"))
    assert refused["a/pg"].problem.startswith("--pg-data-dir: data_dir '/srv/pg data' must be")


def test_model_errors_are_paths_into_the_spec() -> None:
    with pytest.raises(ValidationError) as exc:
        HAClusterSpec.model_validate(
            {
                "nodes": NODES,
                "chain": {"postgres": {"replicationUser": "repl user"}, "services": [{"name": "x", "unit": "x"}]},
            }
        )
    problem = problem_of(exc.value)
    assert problem.startswith("spec.chain.postgres.replicationUser: 'repl user' must be")
    assert problem.endswith(" (and 1 more)")
    assert problem_of(InvalidSpec("spec.chain.mounts[0].volume", "fix it")) == "spec.chain.mounts[0].volume: fix it"


def test_the_report_of_a_refused_cluster_names_the_field() -> None:
    problem = "spec.chain.mounts[0].volume: DRBDVolume mail-store is not in spec.chain.volumes: add it there"
    entry = refusal_report("mail1", problem, epoch=4)
    assert entry["eligible"] is False and entry["role"] == "Unknown" and entry["epoch"] == 4
    assert (entry["ineligibleReason"], entry["ineligibleMessage"]) == ("InvalidSpec", problem)
    long = refusal_report("mail1", "spec: " + "x" * 2000, epoch=0)
    assert len(long["ineligibleMessage"]) == 1024 and len(long["message"]) == 1024
    assert NodeReport.model_validate(long).ineligible_reason is IneligibleReason.INVALID_SPEC
    assert entry["message"].startswith(problem) and "runs none of the chain" in entry["message"]
