"""A spec this node cannot act on, said as the field to fix and how.

The API server and the agent apply the same rules to single values, but some things only the
agent can judge: the objects a chain names and how they fit together, and this node's own
settings. A cluster the agent cannot build is refused on this node alone: it reports
ineligibleReason `InvalidSpec` with the message `<field>: <problem and fix>`, runs none of the
chain, and never stands in the way of the node's other clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class InvalidSpec(ValueError):
    """`field` (a path such as spec.chain.mounts[0].volume) holds something this node cannot
    act on; `problem` says what and how to fix it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def spec_path(loc: Sequence[int | str], root: str = "spec") -> str:
    """A pydantic error location as a path into the object: ("chain", "services", 0, "unit")
    is spec.chain.services[0].unit (the locations are the camelCase names of the wire)."""
    return root + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def problem_of(exc: BaseException, root: str = "spec") -> str:
    """`<field>: <problem and fix>` for anything raised while building a cluster's chain. An
    error that names no field (a bug, or this node's own trouble) is put on `root`."""
    if isinstance(exc, InvalidSpec):
        return str(exc)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        more = exc.error_count() - 1
        return f"{spec_path(first['loc'], root)}: {first['msg'].removeprefix('Value error, ')}" + (
            f" (and {more} more)" if more else ""
        )
    return f"{root}: the agent cannot build this cluster's chain: {type(exc).__name__}: {exc}"
