"""FloatingIP: addresses that move with the primary of an HACluster."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from tandem.api.common import (
    Conditions,
    IPAddress,
    Model,
    NodeName,
    ObjectName,
    cel,
    validations,
)

MAX_ADDRESSES = 256

InterfaceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=15,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$",
        description="Network interface on each node, e.g. bond0 (Linux allows 15 characters).",
    ),
]


class AddressRange(Model):
    """One address, or an inclusive range `start`..`end` of one family."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.end) || ip(self.start).family() == ip(self.end).family()",
                "start and end of a range must both be IPv4 or both be IPv6",
                ".end",
            )
        )
    }

    start: IPAddress = Field(description="The address, or the first address of a range.")
    end: IPAddress | None = Field(
        default=None, description="Last address of the range (inclusive); omit for one address."
    )


class Announcement(Model):
    """How a move is announced: gratuitous ARP (IPv4) or unsolicited neighbour adverts (IPv6)."""

    count: Annotated[int, Field(ge=1, le=20)] = 3
    interval_ms: Annotated[int, Field(ge=10, le=5000)] = 200


class FloatingIPSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.addresses.all(a, ip(a.start).family() == 6 || self.prefixLength <= 32)",
                "spec.prefixLength must be at most 32 for IPv4 addresses",
                ".prefixLength",
            )
        )
    }

    cluster: ObjectName = Field(description="The HACluster whose primary holds these addresses.")
    addresses: Annotated[
        list[AddressRange],
        Field(
            min_length=1,
            max_length=64,
            description=f"Addresses and ranges; at most {MAX_ADDRESSES} addresses in all. "
            "Entries can be added or removed live without a failover.",
        ),
    ]
    prefix_length: Annotated[int, Field(ge=1, le=128)] = Field(description="Prefix length of every address, e.g. 24.")
    interface: InterfaceName
    announce: Announcement = Announcement()


class FloatingIPStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    holder: NodeName | None = None
    summary: Annotated[str, Field(max_length=128, description="e.g. 99 addresses 198.18.0.2-198.18.0.100")] = ""
    address_count: Annotated[int, Field(ge=0, le=MAX_ADDRESSES)] = 0
    epoch: Annotated[int, Field(ge=0)] | None = None
    last_announcement: datetime | None = None
    conditions: Conditions = []


class FloatingIP(Model):
    spec: FloatingIPSpec
    status: FloatingIPStatus | None = None
