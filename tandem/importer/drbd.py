"""Parse DRBD resource files (drbd.conf(5), DRBD 8.4 and 9 syntax) into DrbdResource models.

Every statement is either used or returned as Unsupported, so the report can list it.
`include` is not followed: pass the included files to --drbd instead.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from tandem.importer.model import Attribute, DrbdHost, DrbdResource, InvalidInput, Source, Unsupported

_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|[{};]|[^\s{};#"]+|"')


@dataclass(frozen=True)
class Word:
    text: str
    source: Source


@dataclass
class Statement:
    """`keyword args;` or, with `children`, a section `keyword args { ... }`."""

    keyword: str
    args: list[str]
    source: Source
    children: list[Statement] | None = None

    def described(self) -> str:
        return " ".join([self.keyword, *self.args])


@dataclass
class _Defaults:
    """Values of `common` and of the resource level, which `on` sections inherit."""

    values: dict[str, Statement] = field(default_factory=dict)


def words(text: str, file: str) -> list[Word]:
    found: list[Word] = []
    line = 1
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            raise InvalidInput(Source(file, line), "unterminated quoted string", "close the quote on its line")
        if token.startswith('"'):
            found.append(Word(token[1:-1].replace('\\"', '"'), Source(file, line)))
        elif not token[0].isspace() and not token.startswith("#"):
            found.append(Word(token, Source(file, line)))
        line += token.count("\n")
    return found


def statements(text: str, file: str) -> list[Statement]:
    """The statement tree, built with an explicit stack (no recursion on deep nesting)."""
    top: list[Statement] = []
    open_sections: list[Statement] = []
    pending: list[Word] = []
    for word in words(text, file):
        siblings = open_sections[-1].children if open_sections else top
        assert siblings is not None
        if word.text in (";", "{"):
            if not pending:
                raise InvalidInput(
                    word.source, f"{word.text!r} without a keyword before it", "remove the stray character"
                )
            statement = Statement(pending[0].text, [w.text for w in pending[1:]], pending[0].source)
            siblings.append(statement)
            pending = []
            if word.text == "{":
                statement.children = []
                open_sections.append(statement)
        elif word.text == "}":
            if pending:
                raise InvalidInput(
                    pending[-1].source,
                    f"missing ';' after {' '.join(w.text for w in pending)!r}",
                    "end each statement with ';'",
                )
            if not open_sections:
                raise InvalidInput(word.source, "'}' without a section to close", "remove it or add the '{'")
            open_sections.pop()
        else:
            pending.append(word)
    if pending:
        raise InvalidInput(
            pending[-1].source,
            f"missing ';' after {' '.join(w.text for w in pending)!r}",
            "end each statement with ';'",
        )
    if open_sections:
        raise InvalidInput(
            open_sections[-1].source,
            f"section {open_sections[-1].described()!r} is never closed",
            "add the missing '}'",
        )
    return top


def parse(text: str, file: str) -> list[DrbdResource]:
    common = _Defaults()
    unsupported: list[Unsupported] = []
    resources: list[DrbdResource] = []
    for statement in statements(text, file):
        if statement.keyword == "resource" and statement.children is not None:
            if len(statement.args) != 1:
                raise InvalidInput(statement.source, "a resource needs exactly one name", "write `resource NAME {`")
            resources.append(resource(statement, common))
        elif statement.keyword == "common" and statement.children is not None:
            for child in statement.children:
                defaults(child, common, unsupported)
        elif statement.keyword == "include":
            unsupported.append(
                Unsupported(
                    f"include {' '.join(statement.args)} (not followed: pass those files to --drbd)", statement.source
                )
            )
        else:
            unsupported += flattened(statement)
    # Top-level and `common` leftovers concern every resource of the file.
    return [
        DrbdResource(
            r.name,
            r.hosts,
            r.protocol,
            r.quorum,
            r.on_no_quorum,
            r.after_split_brain,
            tuple(unsupported) + r.unsupported,
            r.source,
        )
        for r in resources
    ]


def flattened(statement: Statement, prefix: str = "") -> list[Unsupported]:
    """An unused statement, or each statement of an unused section, for the report."""
    name = f"{prefix}{statement.described()}"
    if statement.children is None:
        return [Unsupported(name, statement.source)]
    if not statement.children:
        return [Unsupported(f"{name} {{}}", statement.source)]
    return [item for child in statement.children for item in flattened(child, f"{name}: ")]


NET_USED = ("protocol", "after-sb-0pri", "after-sb-1pri", "after-sb-2pri")
OPTIONS_USED = ("quorum", "on-no-quorum")


def defaults(statement: Statement, into: _Defaults, unsupported: list[Unsupported]) -> None:
    """net/options values (and `protocol`, DRBD 8.3's spelling) shared by a resource's hosts."""
    if statement.keyword in ("net", "options") and statement.children is not None:
        used = NET_USED if statement.keyword == "net" else OPTIONS_USED
        for child in statement.children:
            if child.keyword in used and child.children is None:
                into.values[child.keyword] = child
            else:
                unsupported += flattened(child, f"{statement.keyword}: ")
    elif statement.keyword == "protocol" and statement.children is None:
        into.values["protocol"] = statement
    else:
        unsupported += flattened(statement)


HOST_KEYWORDS = ("device", "disk", "address", "meta-disk", "node-id")


def resource(statement: Statement, common: _Defaults) -> DrbdResource:
    name = statement.args[0]
    settings = _Defaults(dict(common.values))
    host_defaults: dict[str, Statement] = {}
    hosts: list[Statement] = []
    unsupported: list[Unsupported] = []
    assert statement.children is not None
    for child in statement.children:
        if child.keyword == "on" and child.children is not None:
            hosts.append(child)
        elif child.keyword in HOST_KEYWORDS and child.children is None:
            host_defaults[child.keyword] = child
        elif child.keyword == "volume" and child.children is not None:
            host_defaults.update(volume(child, name, seen=host_defaults.get("volume")))
            host_defaults["volume"] = child
        elif child.keyword == "connection-mesh" and child.children is not None:
            unsupported += [item for c in child.children if c.keyword != "hosts" for item in flattened(c, "mesh: ")]
        else:
            defaults(child, settings, unsupported)
    if len(hosts) < 2:
        raise InvalidInput(
            statement.source,
            f"resource {name} has {len(hosts)} `on` section(s)",
            "describe every node with `on HOST { device ...; disk ...; address IP:PORT; }`",
        )
    parsed = tuple(host(h, name, host_defaults, unsupported) for h in hosts)
    value = {k: s.args[0] if s.args else "" for k, s in settings.values.items()}
    after_sb = tuple(Attribute(k, value[k], settings.values[k].source) for k in NET_USED[1:] if k in value)
    return DrbdResource(
        name,
        parsed,
        value.get("protocol"),
        value.get("quorum"),
        value.get("on-no-quorum"),
        after_sb,
        tuple(unsupported),
        statement.source,
    )


def volume(section: Statement, resource_name: str, seen: Statement | None) -> dict[str, Statement]:
    """The device/disk/meta-disk of a `volume N { }`; tandem's DRBDVolume holds one volume (a
    host's `volume 0` may refine the resource's `volume 0`)."""
    if seen is not None and seen.args != section.args:
        raise InvalidInput(
            section.source,
            f"resource {resource_name} has a second volume ({section.described()})",
            "tandem's DRBDVolume replicates one device: split the resource into one per volume",
        )
    assert section.children is not None
    found: dict[str, Statement] = {}
    for child in section.children:
        if child.keyword not in ("device", "disk", "meta-disk") or child.children is not None:
            raise InvalidInput(
                child.source,
                f"{child.described()!r} in {section.described()} is not understood",
                "a volume holds device, disk and meta-disk",
            )
        found[child.keyword] = child
    return found


def host(
    section: Statement, resource_name: str, inherited: dict[str, Statement], unsupported: list[Unsupported]
) -> DrbdHost:
    if len(section.args) != 1:
        raise InvalidInput(
            section.source, f"`on {' '.join(section.args)}` must name one host", "write one `on HOST {` per node"
        )
    values = {k: v for k, v in inherited.items() if k != "volume"}
    volume_seen = inherited.get("volume")
    assert section.children is not None
    for child in section.children:
        if child.keyword in HOST_KEYWORDS and child.children is None:
            values[child.keyword] = child
        elif child.keyword == "volume" and child.children is not None:
            values.update(volume(child, resource_name, seen=volume_seen))
            volume_seen = child
        else:
            unsupported += flattened(child, f"on {section.args[0]}: ")
    meta_disk = values.get("meta-disk")
    if meta_disk is not None and meta_disk.args != ["internal"]:
        unsupported.append(Unsupported(f"{meta_disk.described()} (tandem uses internal metadata)", meta_disk.source))
    disk = values.get("disk")
    disk_path = None if disk is None or disk.args == ["none"] else " ".join(disk.args)
    address, port = parse_address(values.get("address"))
    node_id = values.get("node-id")
    return DrbdHost(
        section.args[0],
        disk_path,
        address,
        port,
        integer(node_id) if node_id else None,
        minor(values.get("device")),
        section.source,
    )


def integer(statement: Statement) -> int:
    if len(statement.args) != 1 or not statement.args[0].isdigit():
        raise InvalidInput(
            statement.source, f"{statement.described()!r}: expected one number", f"write `{statement.keyword} 0;`"
        )
    return int(statement.args[0])


def minor(device: Statement | None) -> int | None:
    """`device /dev/drbd0;`, `device /dev/drbd_x minor 0;` or `device minor 0;`."""
    if device is None:
        return None
    args = device.args
    if "minor" in args:
        at = args.index("minor")
        if at + 1 < len(args) and args[at + 1].isdigit():
            return int(args[at + 1])
    elif len(args) == 1 and (match := re.fullmatch(r"/dev/drbd(\d+)", args[0])):
        return int(match.group(1))
    raise InvalidInput(
        device.source,
        f"{device.described()!r}: cannot tell the device minor",
        "write `device /dev/drbd0;` or `device /dev/drbd_name minor 0;`",
    )


def parse_address(statement: Statement | None) -> tuple[str | None, int | None]:
    """`address [ipv4|ipv6] IP:PORT;` (IPv6 in brackets)."""
    if statement is None:
        return None, None
    args = [a for a in statement.args if a not in ("ipv4", "ipv6")]
    match = re.fullmatch(r"\[?([0-9A-Fa-f.:]+?)\]?:(\d+)", args[0]) if len(args) == 1 else None
    if match is None:
        raise InvalidInput(
            statement.source,
            f"{statement.described()!r} is not an address",
            "write `address 198.19.0.11:7789;` or `address ipv6 [fd00::11]:7789;`",
        )
    try:
        ip = str(ipaddress.ip_address(match.group(1)))
    except ValueError:
        raise InvalidInput(
            statement.source,
            f"{match.group(1)!r} is not an IP address",
            "write the replication address as an IPv4 or IPv6 address",
        ) from None
    return ip, int(match.group(2))
