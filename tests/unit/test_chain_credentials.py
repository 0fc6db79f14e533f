"""The chain runner's view of the replication password: read, kept, reported.

Nothing runs: the environment's password source is a plain function, and the chain is never
brought up (state Unknown, so no server is asked anything)."""

from __future__ import annotations

from pathlib import Path

from tandem.api.hacluster import HAClusterSpec, PostgresSpec
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster
from tandem_agent.credentials import CredentialsError
from tandem_agent.drivers.postgres import PostgresConfig


def runner(tmp_path: Path, source: list[str | Exception], **spec: object) -> ChainRunner:
    cluster = ResolvedCluster(
        "mail",
        HAClusterSpec.model_validate(
            {
                "nodes": [
                    {"name": "mail1", "replicationAddress": "198.19.0.201"},
                    {"name": "mail2", "replicationAddress": "198.19.0.202"},
                ],
                "chain": {"postgres": {"credentialsSecret": "mail-pg"}},
            }
            | spec
        ),
        {},
        {},
    )

    def password(_: PostgresSpec, namespace: str) -> str:
        assert namespace == "default"
        answer = source[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def postgres(c: ResolvedCluster, pw: str | None) -> PostgresConfig:
        return PostgresConfig(node_name="mail1", data_dir=tmp_path / "data", replication_password=pw, os_user="root")

    env = NodeEnvironment(
        node="mail1",
        state_dir=tmp_path,
        volume_driver=None,  # type: ignore[arg-type]
        service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
        postgres_config=postgres,
        replication_password=password,
    )
    return ChainRunner(cluster, env)


def test_a_missing_secret_is_the_nodes_problem_until_it_appears(tmp_path: Path) -> None:
    source: list[str | Exception] = [
        CredentialsError("spec.chain.postgres.credentialsSecret: Secret mail-pg does not exist")
    ]
    r = runner(tmp_path, source)
    assert r.problem() is None  # not read yet
    r.refresh_credentials(now=0.0)
    assert r.problem() == "spec.chain.postgres.credentialsSecret: Secret mail-pg does not exist"
    source[0] = "s3cret"
    r.refresh_credentials(now=1.0)  # retried only every 2 s while missing
    assert r.problem() is not None
    r.refresh_credentials(now=2.0)
    assert r.problem() is None and r.password == "s3cret"
    assert r.postgres is not None and r.postgres.config.replication_password == "s3cret"
    assert (tmp_path / "data.run" / "pgpass").read_text() == "*:*:*:replicator:s3cret\n"


def test_a_secret_that_goes_away_keeps_the_last_good_password(tmp_path: Path) -> None:
    source: list[str | Exception] = ["first"]
    r = runner(tmp_path, source)
    r.refresh_credentials(now=0.0)
    source[0] = CredentialsError("cannot read Secret mail-pg now")
    r.refresh_credentials(now=31.0)
    assert r.problem() is None and r.password == "first"
    source[0] = "second"
    r.refresh_credentials(now=40.0)  # read every 30 s once known
    assert r.password == "first"
    r.refresh_credentials(now=61.0)
    assert r.password == "second"
    assert "second" in (tmp_path / "data.run" / "pgpass").read_text()


def test_a_node_without_a_replication_address_cannot_run_postgres(tmp_path: Path) -> None:
    r = runner(tmp_path, ["pw"], nodes=[{"name": "mail1", "replicationAddress": "198.19.0.201"}, {"name": "mail2"}])
    assert r.problem() == (
        "spec.nodes[1].replicationAddress is not set (mail2): PostgreSQL "
        "streams to and admits replication only from the nodes' replication "
        "addresses"
    )
