"""Parse `crm configure show` output (crmsh syntax) into the PacemakerConfig model."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from tandem.importer.model import (
    Attribute,
    Clone,
    Colocation,
    Group,
    InvalidInput,
    Location,
    Node,
    Operation,
    Order,
    PacemakerConfig,
    Primitive,
    ResourceRef,
    Setting,
    Source,
    Unsupported,
)

# crmsh keywords that are valid but describe nothing tandem has; kept whole in the report.
UNMODELLED_KEYWORDS = frozenset(
    {
        "fencing_topology",
        "tag",
        "rsc_ticket",
        "rsc_template",
        "template",
        "role",
        "user",
        "acl_target",
        "acl_group",
        "alert",
        "xml",
        "bundle",
    }
)
PRIMITIVE_SECTIONS = frozenset({"params", "meta", "utilization", "op"})


@dataclass(frozen=True)
class Token:
    text: str
    source: Source


class Statement:
    """One logical crmsh statement (continuation lines joined) read token by token."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0
        self.source = tokens[0].source

    def more(self) -> bool:
        return self.position < len(self.tokens)

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.more() else None

    def take(self, what: str) -> Token:
        if not self.more():
            last = self.tokens[-1]
            raise InvalidInput(
                last.source,
                f"{self.tokens[0].text} statement ends where {what} was expected",
                f"add {what} (see `crm configure help {self.tokens[0].text}`)",
            )
        token = self.tokens[self.position]
        self.position += 1
        return token

    def identifier(self, what: str) -> Token:
        token = self.take(what)
        if not token.text or "=" in token.text or token.text.startswith(("$", "(", ")")):
            raise InvalidInput(token.source, f"{token.text!r} is not a valid {what}", f"write {what} as a plain id")
        return token


def tokenize(text: str, file: str) -> list[list[Token]]:
    """Split into statements: `\\` at the end of a line continues it; a line starting with `#` is a comment."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    continued = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line.lstrip().startswith("#"):  # crmsh comments are whole lines; `#uname` in a rule is not one
            line = "\\" if continued else ""
        continues = line.endswith("\\")
        if continues:
            line = line[:-1]
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            words = list(lexer)
        except ValueError as exc:
            raise InvalidInput(
                Source(file, number),
                f"cannot split the line into words ({exc})",
                "close the quote; a quoted value must end on its line",
            ) from None
        tokens = [Token(word, Source(file, number)) for word in words]
        if not continued and current:
            statements.append(current)
            current = []
        current += tokens
        continued = continues
    if current:
        statements.append(current)
    return statements


def parse(text: str, file: str) -> PacemakerConfig:
    config = PacemakerConfig()
    for tokens in tokenize(text, file):
        statement = Statement(tokens)
        keyword = statement.take("a keyword").text
        handler = HANDLERS.get(keyword)
        if handler is not None:
            handler(statement, config)
        elif keyword in UNMODELLED_KEYWORDS:
            words = " ".join(t.text for t in tokens[:4])
            config.unsupported.append(Unsupported(f"{words}{' ...' if len(tokens) > 4 else ''}", statement.source))
        else:
            raise InvalidInput(
                statement.source,
                f"unknown crmsh keyword {keyword!r}",
                "give `crm configure show` output: statements start with node, primitive, "
                "group, clone, ms, colocation, order, location, property, rsc_defaults or "
                "op_defaults",
            )
    config.check_references()
    return config


def attribute(token: Token, context: str) -> Attribute:
    name, equals, value = token.text.partition("=")
    if not equals or not name:
        raise InvalidInput(
            token.source,
            f"{token.text!r} in {context} is not name=value",
            "write each parameter as name=value, quoting values with spaces",
        )
    return Attribute(name.lstrip("$"), value, token.source)


def attributes_until_keyword(statement: Statement, context: str, keywords: frozenset[str]) -> list[Attribute]:
    found: list[Attribute] = []
    while (token := statement.peek()) is not None and token.text not in keywords:
        found.append(attribute(statement.take("name=value"), context))
    return found


def parse_primitive(statement: Statement, config: PacemakerConfig) -> None:
    name = statement.identifier("primitive id")
    agent = statement.take("a resource agent such as ocf:heartbeat:IPaddr2").text
    if "=" in agent or agent in PRIMITIVE_SECTIONS:
        raise InvalidInput(
            statement.source,
            f"primitive {name.text} has no resource agent",
            f"write `primitive {name.text} ocf:heartbeat:IPaddr2 params ...` (class:provider:type)",
        )
    if ":" not in agent:
        agent = f"ocf:heartbeat:{agent}"  # crmsh's default class and provider
    params: list[Attribute] = []
    meta: list[Attribute] = []
    operations: list[Operation] = []
    while statement.more():
        section = statement.take("params, meta, op or utilization")
        context = f"primitive {name.text}"
        if section.text == "params":
            params += attributes_until_keyword(statement, context, PRIMITIVE_SECTIONS)
        elif section.text == "meta":
            meta += attributes_until_keyword(statement, context, PRIMITIVE_SECTIONS)
        elif section.text == "op":
            action = statement.identifier("operation name such as monitor")
            found = attributes_until_keyword(statement, f"{context} op {action.text}", PRIMITIVE_SECTIONS)
            operations.append(Operation(action.text, tuple(found), action.source))
        elif section.text == "utilization":
            for item in attributes_until_keyword(statement, context, PRIMITIVE_SECTIONS):
                config.unsupported.append(
                    Unsupported(f"utilization {item.name}={item.value} of {name.text}", item.source)
                )
        else:
            raise InvalidInput(
                section.source,
                f"unexpected {section.text!r} in primitive {name.text}",
                "sections of a primitive are params, meta, utilization and op",
            )
    config.define(name.text, statement.source)
    config.primitives[name.text] = Primitive(
        name.text, agent, tuple(params), tuple(meta), tuple(operations), statement.source
    )


def trailing_meta(statement: Statement, context: str, config: PacemakerConfig) -> list[Attribute]:
    """`meta`/`params` sections after a group's or clone's members (params of a clone are rare)."""
    meta: list[Attribute] = []
    while statement.more():
        section = statement.take("meta")
        if section.text not in ("meta", "params"):
            raise InvalidInput(
                section.source,
                f"unexpected {section.text!r} in {context}",
                "after the members come only `meta name=value ...`",
            )
        found = attributes_until_keyword(statement, context, frozenset({"meta", "params"}))
        if section.text == "params":
            config.unsupported += [Unsupported(f"params {a.name}={a.value} of {context}", a.source) for a in found]
        else:
            meta += found
    return meta


def parse_group(statement: Statement, config: PacemakerConfig) -> None:
    name = statement.identifier("group id")
    members: list[str] = []
    while (token := statement.peek()) is not None and token.text not in ("meta", "params"):
        members.append(statement.identifier("group member").text)
    if not members:
        raise InvalidInput(
            statement.source,
            f"group {name.text} has no members",
            f"list its primitives in start order: group {name.text} p_fs p_ip p_service",
        )
    meta = trailing_meta(statement, f"group {name.text}", config)
    config.define(name.text, statement.source)
    config.groups[name.text] = Group(name.text, tuple(members), tuple(meta), statement.source)


def parse_clone(statement: Statement, config: PacemakerConfig, *, master_slave: bool) -> None:
    name = statement.identifier("clone id")
    child = statement.identifier("cloned resource")
    meta = trailing_meta(statement, f"clone {name.text}", config)
    promotable = master_slave or any(a.name == "promotable" and is_true(a.value) for a in meta)
    config.define(name.text, statement.source)
    config.clones[name.text] = Clone(name.text, child.text, promotable, tuple(meta), statement.source)


def is_true(value: str) -> bool:
    return value.lower() in ("true", "yes", "on", "1", "y")


def reference(token: Token) -> ResourceRef:
    resource, _, qualifier = token.text.partition(":")
    if not resource or resource.startswith(("(", "[", ")", "]")) or "=" in resource:
        raise InvalidInput(token.source, f"{token.text!r} is not a resource", "name a resource id")
    return ResourceRef(resource, qualifier or None)


def constraint_resources(statement: Statement) -> tuple[list[Token], list[Token]]:
    """The resources of a constraint and its trailing name=value options."""
    resources: list[Token] = []
    options: list[Token] = []
    while statement.more():
        token = statement.take("a resource")
        (options if "=" in token.text else resources).append(token)
    return resources, options


def score_token(statement: Statement, what: str) -> Token:
    token = statement.take(f"a score such as inf: in {what}")
    if not token.text.endswith(":") or len(token.text) < 2:
        raise InvalidInput(
            token.source,
            f"{what}: expected a score such as inf: or 100:, found {token.text!r}",
            f"write `{what} inf: ...`",
        )
    return token


def parse_colocation(statement: Statement, config: PacemakerConfig) -> None:
    name = statement.identifier("colocation id")
    score = score_token(statement, f"colocation {name.text}").text[:-1]
    resources, options = constraint_resources(statement)
    if len(resources) != 2 or any(t.text in "()[]" for t in resources):
        config.unsupported.append(
            Unsupported(
                f"colocation {name.text} over a resource set ({' '.join(t.text for t in resources)})", statement.source
            )
        )
        return
    config.colocations.append(
        Colocation(name.text, score, reference(resources[0]), reference(resources[1]), statement.source)
    )
    config.unsupported += [Unsupported(f"colocation {name.text} option {t.text}", t.source) for t in options]


def parse_order(statement: Statement, config: PacemakerConfig) -> None:
    name = statement.identifier("order id")
    kind = "Mandatory"
    token = statement.peek()
    if token is not None and token.text.endswith(":") and token.text.count(":") == 1:
        kind = statement.take("kind").text[:-1]
    resources, options = constraint_resources(statement)
    if len(resources) != 2 or any(t.text in "()[]" for t in resources):
        config.unsupported.append(
            Unsupported(
                f"order {name.text} over a resource set ({' '.join(t.text for t in resources)})", statement.source
            )
        )
        return
    config.orders.append(Order(name.text, kind, reference(resources[0]), reference(resources[1]), statement.source))
    config.unsupported += [Unsupported(f"order {name.text} option {t.text}", t.source) for t in options]


def parse_location(statement: Statement, config: PacemakerConfig) -> None:
    name = statement.identifier("location id")
    resource = statement.take("a resource")
    if resource.text.startswith(("{", "/")):
        rest = " ".join(t.text for t in statement.tokens[statement.position :])
        config.unsupported.append(Unsupported(f"location {name.text} {resource.text} {rest}", statement.source))
        return
    options: list[Attribute] = []
    while (token := statement.peek()) is not None and "=" in token.text and not token.text.endswith(":"):
        options.append(attribute(statement.take("option"), f"location {name.text}"))
    token = statement.take("a score and node, or a rule")
    if token.text == "rule":
        rule = " ".join(t.text for t in statement.tokens[statement.position :])
        statement.position = len(statement.tokens)
        config.locations.append(Location(name.text, resource.text, None, None, rule or "(empty)", statement.source))
    else:
        statement.position -= 1
        score = score_token(statement, f"location {name.text}").text[:-1]
        node = statement.identifier("node name")
        config.locations.append(Location(name.text, resource.text, score, node.text, None, statement.source))
        if statement.more():
            extra = statement.take("end")
            raise InvalidInput(
                extra.source,
                f"unexpected {extra.text!r} after the node of location {name.text}",
                "one location names one node; write one location per node",
            )
    config.unsupported += [Unsupported(f"location {name.text} option {a.name}={a.value}", a.source) for a in options]


def parse_node(statement: Statement, config: PacemakerConfig) -> None:
    token = statement.identifier("node name")
    if token.text.endswith(":") and statement.more() and statement.peek() is not None:
        token = statement.identifier("node name")  # `node 1: mail1`: the first word is the id
    name, _, node_type = token.text.partition(":")
    if node_type and node_type not in ("normal", "member"):
        config.unsupported.append(Unsupported(f"node {name} of type {node_type}", token.source))
    attributes: list[Attribute] = []
    while statement.more():
        section = statement.take("attributes")
        found = attributes_until_keyword(statement, f"node {name}", frozenset({"attributes", "utilization"}))
        if section.text == "attributes":
            attributes += found
        elif section.text == "utilization":
            config.unsupported += [
                Unsupported(f"utilization {a.name}={a.value} of node {name}", a.source) for a in found
            ]
        else:
            raise InvalidInput(
                section.source,
                f"unexpected {section.text!r} in node {name}",
                "a node has `attributes name=value ...` and `utilization name=value ...`",
            )
    config.nodes.append(Node(name, tuple(attributes), statement.source))


def settings_parser(section: str) -> Callable[[Statement, PacemakerConfig], None]:
    def parse_settings(statement: Statement, config: PacemakerConfig) -> None:
        token = statement.peek()
        if token is not None and (token.text.endswith(":") or token.text.startswith("$id=")):
            statement.take("set id")
        while statement.more():
            found = attribute(statement.take("name=value"), section)
            config.settings.append(Setting(section, found.name, found.value, found.source))

    return parse_settings


HANDLERS: dict[str, Callable[[Statement, PacemakerConfig], None]] = {
    "node": parse_node,
    "primitive": parse_primitive,
    "group": parse_group,
    "clone": lambda s, c: parse_clone(s, c, master_slave=False),
    "ms": lambda s, c: parse_clone(s, c, master_slave=True),
    "master": lambda s, c: parse_clone(s, c, master_slave=True),
    "colocation": parse_colocation,
    "collocation": parse_colocation,
    "order": parse_order,
    "location": parse_location,
    "property": settings_parser("property"),
    "rsc_defaults": settings_parser("rsc_defaults"),
    "op_defaults": settings_parser("op_defaults"),
}
