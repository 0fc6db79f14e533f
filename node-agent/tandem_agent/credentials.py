"""The PostgreSQL replication password: from the Secret the HACluster names, or a host file.

`spec.chain.postgres.credentialsSecret` names a Secret in the HACluster's namespace whose key
``password`` is the replication user's password; the agent reads that one Secret by name
(RBAC: ``get`` on secrets, granted per namespace, see docs/postgres.md). Without it, a host
install may give the agent a file (``--pg-password-file``). Neither: the chain does not come
up, since the nodes could not authenticate each other. Every failure is a `CredentialsError`
whose message names the field and the fix; nothing here raises anything else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from pathlib import Path

from tandem.api.hacluster import PostgresSpec
from tandem_agent.drivers.base import DriverError
from tandem_agent.drivers.postgres import password_problem

FIELD = "spec.chain.postgres.credentialsSecret"
KEY = "password"

# Reads a Secret of the cluster's namespace by name: its `data` (base64 values), None when it
# does not exist; raises CredentialsError when it cannot tell.
SecretReader = Callable[[str], Mapping[str, str] | None]


class CredentialsError(DriverError):
    """The replication password is not available; the message says where it was looked for."""


def password_from_secret(data: Mapping[str, str] | None, secret: str, namespace: str) -> str:
    """The password in a Secret's `data`, decoded and checked."""
    if data is None:
        raise CredentialsError(
            f"{FIELD}: Secret {secret} does not exist in namespace {namespace}: create it, e.g. "
            f"kubectl -n {namespace} create secret generic {secret} "
            f'--from-literal={KEY}="$(openssl rand -base64 32)"'
        )
    if KEY not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise CredentialsError(
            f"{FIELD}: Secret {secret} in namespace {namespace} has no key {KEY!r} (its keys: {keys})"
        )
    try:
        password = base64.b64decode(data[KEY], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{FIELD}: key {KEY!r} of Secret {secret} is not UTF-8 text") from exc
    if problem := password_problem(password):
        raise CredentialsError(f"{FIELD}: key {KEY!r} of Secret {secret} {problem}")
    return password


def password_from_file(path: Path) -> str:
    """The password in a host file (one trailing line break, as editors add, is ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"--pg-password-file {path}: cannot read it ({exc})") from exc
    password = text.removesuffix("\n")
    if problem := password_problem(password):
        raise CredentialsError(f"--pg-password-file {path}: the password {problem}")
    return password


def replication_password(
    spec: PostgresSpec, namespace: str, read_secret: SecretReader, password_file: Path | None
) -> str:
    """The Secret when the spec names one, else the host file, else a CredentialsError."""
    if spec.credentials_secret:
        return password_from_secret(read_secret(spec.credentials_secret), spec.credentials_secret, namespace)
    if password_file is not None:
        return password_from_file(password_file)
    raise CredentialsError(
        f"{FIELD} is not set and the agent has no --pg-password-file: the nodes authenticate "
        "replication with a password (scram-sha-256), so name a Secret in this namespace with "
        f"the key {KEY!r}"
    )
