"""Parse a CIB (`cibadmin --query` output) into the same PacemakerConfig model as crmsh text.

The `status` section is runtime state, not configuration, and is not read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

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


def _build_tree(text: str) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse with expat directly: ElementTree's parser does not say which line an element is on.

    Entity declarations are refused (a CIB never has any), so no entity can expand."""
    parser = expat.ParserCreate()
    lines: dict[ET.Element, int] = {}
    stack: list[ET.Element] = []
    roots: list[ET.Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = ET.SubElement(stack[-1], tag, attrs) if stack else ET.Element(tag, attrs)
        lines[element] = parser.CurrentLineNumber
        if not stack:
            roots.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def refuse_entity(*_args: object) -> None:
        raise ValueError("entity declarations are not allowed in a CIB")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = refuse_entity
    parser.Parse(text, True)
    return roots[0], lines


class _Reader:
    def __init__(self, file: str, lines: dict[ET.Element, int]) -> None:
        self.file = file
        self.lines = lines

    def source(self, element: ET.Element) -> Source:
        return Source(self.file, self.lines.get(element, 0))

    def need(self, element: ET.Element, name: str) -> str:
        value = element.get(name)
        if not value:
            raise InvalidInput(
                self.source(element),
                f"<{element.tag}> has no {name} attribute",
                f"give the {element.tag} its {name}= (as `cibadmin --query` writes it)",
            )
        return value

    def nvpairs(self, element: ET.Element, section: str) -> list[Attribute]:
        return [
            Attribute(self.need(pair, "name"), pair.get("value", ""), self.source(pair))
            for block in element.findall(section)
            for pair in block.findall("nvpair")
        ]


def parse(text: str, file: str) -> PacemakerConfig:
    try:
        root, lines = _build_tree(text)
    except expat.ExpatError as exc:
        raise InvalidInput(
            Source(file, exc.lineno),
            f"not well-formed XML ({expat.errors.messages[exc.code]})",
            "pass the unmodified output of `cibadmin --query`",
        ) from None
    except ValueError as exc:
        raise InvalidInput(Source(file, 1), str(exc), "pass the unmodified output of `cibadmin --query`") from None
    reader = _Reader(file, lines)
    configuration = root.find("configuration") if root.tag == "cib" else None
    if configuration is None:
        raise InvalidInput(
            reader.source(root),
            f"<{root.tag}> is not a CIB with a <configuration>",
            "pass the output of `cibadmin --query` (a <cib> element)",
        )
    config = PacemakerConfig()
    for child in configuration:
        handler = SECTIONS.get(child.tag)
        if handler is None:
            config.unsupported.append(Unsupported(f"<{child.tag}> section", reader.source(child)))
        else:
            handler(reader, child, config)
    config.check_references()
    return config


def read_properties(reader: _Reader, section: ET.Element, config: PacemakerConfig) -> None:
    for block in section:
        for pair in block.findall("nvpair"):
            config.settings.append(
                Setting("property", reader.need(pair, "name"), pair.get("value", ""), reader.source(pair))
            )


def read_defaults(kind: str) -> Any:
    def read(reader: _Reader, section: ET.Element, config: PacemakerConfig) -> None:
        for block in section:
            for pair in block.findall("nvpair"):
                config.settings.append(
                    Setting(kind, reader.need(pair, "name"), pair.get("value", ""), reader.source(pair))
                )

    return read


def read_nodes(reader: _Reader, section: ET.Element, config: PacemakerConfig) -> None:
    for node in section.findall("node"):
        name = reader.need(node, "uname")
        if node.get("type", "member") not in ("member", "normal"):
            config.unsupported.append(Unsupported(f"node {name} of type {node.get('type')}", reader.source(node)))
        for item in reader.nvpairs(node, "utilization"):
            config.unsupported.append(Unsupported(f"utilization {item.name}={item.value} of node {name}", item.source))
        config.nodes.append(Node(name, tuple(reader.nvpairs(node, "instance_attributes")), reader.source(node)))


def read_primitive(reader: _Reader, element: ET.Element, config: PacemakerConfig) -> str:
    name = reader.need(element, "id")
    if element.get("template"):
        config.unsupported.append(
            Unsupported(f"primitive {name} from template {element.get('template')}", reader.source(element))
        )
        agent = f"template:{element.get('template')}"
    else:
        parts = [reader.need(element, "class"), element.get("provider"), reader.need(element, "type")]
        agent = ":".join(p for p in parts if p)
    operations = []
    for op in element.findall("operations/op"):
        attrs = [Attribute(k, v, reader.source(op)) for k, v in op.attrib.items() if k not in ("id", "name")]
        attrs += reader.nvpairs(op, "instance_attributes")
        operations.append(Operation(reader.need(op, "name"), tuple(attrs), reader.source(op)))
    for item in reader.nvpairs(element, "utilization"):
        config.unsupported.append(Unsupported(f"utilization {item.name}={item.value} of {name}", item.source))
    config.define(name, reader.source(element))
    config.primitives[name] = Primitive(
        name,
        agent,
        tuple(reader.nvpairs(element, "instance_attributes")),
        tuple(reader.nvpairs(element, "meta_attributes")),
        tuple(operations),
        reader.source(element),
    )
    return name


def read_group(reader: _Reader, element: ET.Element, config: PacemakerConfig) -> str:
    name = reader.need(element, "id")
    members = tuple(read_primitive(reader, p, config) for p in element.findall("primitive"))
    if not members:
        raise InvalidInput(reader.source(element), f"group {name} has no primitives", "give the group its members")
    config.define(name, reader.source(element))
    config.groups[name] = Group(
        name, members, tuple(reader.nvpairs(element, "meta_attributes")), reader.source(element)
    )
    return name


def read_clone(reader: _Reader, element: ET.Element, config: PacemakerConfig) -> str:
    name = reader.need(element, "id")
    children = [c for c in element if c.tag in ("primitive", "group")]
    if len(children) != 1:
        raise InvalidInput(
            reader.source(element),
            f"{element.tag} {name} holds {len(children)} resources",
            "a clone holds exactly one primitive or group",
        )
    child = children[0]
    child_id = read_primitive(reader, child, config) if child.tag == "primitive" else read_group(reader, child, config)
    meta = tuple(reader.nvpairs(element, "meta_attributes"))
    promotable = element.tag == "master" or any(
        a.name == "promotable" and a.value.lower() in ("true", "yes", "on", "1") for a in meta
    )
    config.define(name, reader.source(element))
    config.clones[name] = Clone(name, child_id, promotable, meta, reader.source(element))
    return name


def read_resources(reader: _Reader, section: ET.Element, config: PacemakerConfig) -> None:
    for element in section:
        if element.tag == "primitive":
            read_primitive(reader, element, config)
        elif element.tag == "group":
            read_group(reader, element, config)
        elif element.tag in ("clone", "master"):
            read_clone(reader, element, config)
        else:
            config.unsupported.append(
                Unsupported(f"<{element.tag} id={element.get('id')!r}> resource", reader.source(element))
            )


def _rule_text(rule: ET.Element) -> str:
    score = rule.get("score") or rule.get("score-attribute") or ""
    terms = [
        " ".join(filter(None, (e.get("attribute"), e.get("operation"), e.get("value"))))
        for e in rule.iter()
        if e.tag in ("expression", "date_expression")
    ]
    return f"{score}: " + f" {rule.get('boolean-op', 'and')} ".join(terms)


def read_constraints(reader: _Reader, section: ET.Element, config: PacemakerConfig) -> None:
    for element in section:
        name = element.get("id", "?")
        source = reader.source(element)
        if element.find("resource_set") is not None:
            config.unsupported.append(Unsupported(f"{element.tag} {name} over a resource set", source))
        elif element.tag == "rsc_colocation":
            config.colocations.append(
                Colocation(
                    name,
                    reader.need(element, "score"),
                    ResourceRef(reader.need(element, "rsc"), element.get("rsc-role")),
                    ResourceRef(reader.need(element, "with-rsc"), element.get("with-rsc-role")),
                    source,
                )
            )
        elif element.tag == "rsc_order":
            kind = element.get("kind") or element.get("score") or "Mandatory"
            config.orders.append(
                Order(
                    name,
                    kind,
                    ResourceRef(reader.need(element, "first"), element.get("first-action")),
                    ResourceRef(reader.need(element, "then"), element.get("then-action")),
                    source,
                )
            )
            if element.get("symmetrical"):
                config.unsupported.append(
                    Unsupported(f"order {name} option symmetrical={element.get('symmetrical')}", source)
                )
        elif element.tag == "rsc_location" and element.get("rsc"):
            rules = element.findall("rule")
            if rules:
                text = "; ".join(_rule_text(r) for r in rules)
                config.locations.append(Location(name, element.get("rsc", ""), None, None, text, source))
            else:
                config.locations.append(
                    Location(
                        name,
                        element.get("rsc", ""),
                        reader.need(element, "score"),
                        reader.need(element, "node"),
                        None,
                        source,
                    )
                )
        else:
            config.unsupported.append(Unsupported(f"{element.tag} {name}", source))


SECTIONS: dict[str, Any] = {
    "crm_config": read_properties,
    "nodes": read_nodes,
    "resources": read_resources,
    "constraints": read_constraints,
    "rsc_defaults": read_defaults("rsc_defaults"),
    "op_defaults": read_defaults("op_defaults"),
}
