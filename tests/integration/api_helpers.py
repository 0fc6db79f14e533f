"""Helpers the API-server tests share: a spec change at a dotted path, a token kubeconfig."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Mutation = Callable[[dict[str, Any]], None]


def set_at(path: str, value: Any) -> Mutation:
    """A change of a document at a dotted path (list indexes as numbers)."""

    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return change


def token_kubeconfig(admin: Path, token: str, out: Path) -> Path:
    """The admin's kubeconfig with its client certificate replaced by `token`."""
    cfg = yaml.safe_load(admin.read_text())
    cfg["users"] = [{"name": "token", "user": {"token": token}}]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = "token"
    out.write_text(yaml.safe_dump(cfg))
    out.chmod(0o600)
    return out
