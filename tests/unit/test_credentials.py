"""Where the replication password comes from, and the errors when it cannot be had.

Pure: the Secret reader is a plain function returning what the API server would."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest

from tandem.api.hacluster import PostgresSpec
from tandem_agent.credentials import (
    CredentialsError,
    SecretReader,
    password_from_file,
    password_from_secret,
    replication_password,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def reader(secrets: dict[str, Mapping[str, str]]) -> SecretReader:
    return secrets.get


SPEC = PostgresSpec(credentials_secret="mail-postgres-replication")


def test_the_secret_named_by_the_spec_wins() -> None:
    read = reader({"mail-postgres-replication": {"password": b64("s3:cr\\et'")}})
    assert replication_password(SPEC, "mail", read, Path("/nonexistent")) == "s3:cr\\et'"


def test_a_missing_secret_names_the_field_the_namespace_and_the_fix() -> None:
    with pytest.raises(CredentialsError) as err:
        replication_password(SPEC, "mail", reader({}), None)
    text = str(err.value)
    assert text.startswith(
        "spec.chain.postgres.credentialsSecret: Secret mail-postgres-replication does not exist in namespace mail"
    )
    assert "kubectl -n mail create secret generic mail-postgres-replication" in text


def test_a_missing_key_lists_the_keys_there_are() -> None:
    read = reader({"mail-postgres-replication": {"pass": b64("x"), "user": b64("u")}})
    with pytest.raises(CredentialsError, match=r"has no key 'password' \(its keys: pass, user\)"):
        replication_password(SPEC, "mail", read, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b64("two\nlines"), "line break"),
        (b64(""), "is empty"),
        ("not base64!", "not UTF-8 text"),
        (base64.b64encode(b"\xff\xfe").decode(), "not UTF-8 text"),
    ],
)
def test_an_unusable_password_in_the_secret_is_refused(value: str, message: str) -> None:
    with pytest.raises(CredentialsError, match=f"credentialsSecret: .*{message}"):
        password_from_secret({"password": value}, "s", "ns")


def test_without_a_secret_the_host_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("from a file\n")
    assert replication_password(PostgresSpec(), "ns", reader({}), path) == "from a file"
    path.write_text("two\nlines\n")
    with pytest.raises(CredentialsError, match=r"--pg-password-file .*line break"):
        password_from_file(path)
    with pytest.raises(CredentialsError, match="cannot read it"):
        password_from_file(tmp_path / "missing")


def test_neither_secret_nor_file_is_a_configuration_error_naming_both_fixes() -> None:
    with pytest.raises(CredentialsError) as err:
        replication_password(PostgresSpec(), "ns", reader({}), None)
    assert str(err.value).startswith(
        "spec.chain.postgres.credentialsSecret is not set and the agent has no --pg-password-file"
    )
