"""The three parsers on their own: crmsh text, CIB XML, DRBD files; and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.importer import cib, crm, drbd, mapping
from tandem.importer.model import InvalidInput, Source


def test_crm_continuations_comments_quotes_and_short_agent_names() -> None:
    config = crm.parse(
        "# exported by crm configure show\n"
        "primitive p_fs Filesystem \\\n"
        "\t# a comment inside a statement\n"
        '\tparams device=/dev/drbd0 directory="/srv/my data" \\\n'
        "\top monitor interval=20s timeout=40s\n"
        "node 1: alpha \\\n\tattributes standby=on\n",
        "t.crm",
    )
    primitive = config.primitives["p_fs"]
    assert primitive.agent == "ocf:heartbeat:Filesystem"
    assert primitive.param("directory") == "/srv/my data"
    assert primitive.params[1].source == Source("t.crm", 4)
    assert primitive.operations[0].source == Source("t.crm", 5)
    assert [(n.name, [(a.name, a.value) for a in n.attributes]) for n in config.nodes] == [
        ("alpha", [("standby", "on")])
    ]


def test_crm_ms_and_promotable_clone_are_the_same_thing() -> None:
    config = crm.parse(
        "primitive d ocf:linbit:drbd params drbd_resource=r\nprimitive e ocf:linbit:drbd\n"
        "ms ms_d d meta notify=true\nclone cl_e e meta promotable=true\n"
        "primitive w systemd:nginx\nclone cl_w w\n",
        "t.crm",
    )
    assert [c.promotable for c in config.clones.values()] == [True, True, False]


def test_crm_constraints_with_roles_actions_and_scores() -> None:
    config = crm.parse(
        "primitive a systemd:a\nprimitive b systemd:b\n"
        "colocation c inf: a b:Promoted\norder o Optional: b:promote a:start\n"
        "order o2 b a\nlocation l a -inf: n1\n",
        "t.crm",
    )
    (colocation,) = config.colocations
    assert (colocation.score, colocation.anchor.id, colocation.anchor.qualifier) == ("inf", "b", "Promoted")
    assert [(o.kind, o.first.id, o.first.qualifier) for o in config.orders] == [
        ("Optional", "b", "promote"),
        ("Mandatory", "b", None),
    ]
    assert (config.locations[0].score, config.locations[0].node) == ("-inf", "n1")


def test_standby_attribute_becomes_standby_nodes() -> None:
    config = crm.parse(
        "node a\nnode b \\\n\tattributes standby=on\nnode c\nprimitive w systemd:web\ngroup g_web w\n", "t.crm"
    )
    result = mapping.map_config(config, [], "ns")
    spec = result.clusters[0].manifests[-1].document["spec"]
    assert spec["standbyNodes"] == ["b"] and len(spec["nodes"]) == 3


def test_drbd9_volume_sections_ipv6_and_common_defaults() -> None:
    (resource,) = drbd.parse(
        """
common { net { protocol A; } }
resource "data" {
  volume 0 { device minor 7; disk /dev/vg/data; meta-disk internal; }
  on "n1" { node-id 4; address ipv6 [fd00::1]:7000; }
  on n2 { node-id 5; address ipv6 [fd00::2]:7000; }
  on n3 { node-id 6; address ipv6 [fd00::3]:7000; volume 0 { device minor 7; disk none; } }
  handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh"; }
}
""",
        "d.res",
    )
    assert resource.name == "data" and resource.protocol == "A"
    assert [(h.name, h.disk, h.address, h.port, h.node_id, h.minor) for h in resource.hosts] == [
        ("n1", "/dev/vg/data", "fd00::1", 7000, 4, 7),
        ("n2", "/dev/vg/data", "fd00::2", 7000, 5, 7),
        ("n3", None, "fd00::3", 7000, 6, 7),
    ]
    assert [u.what for u in resource.unsupported] == ["handlers: fence-peer /usr/lib/drbd/crm-fence-peer.9.sh"]


def test_drbd_include_is_reported_not_followed() -> None:
    resources = drbd.parse(
        'include "drbd.d/*.res";\nresource r { on a { device /dev/drbd1; disk /dev/x; '
        "address 10.0.0.1:7789; } on b { device /dev/drbd1; disk /dev/x; "
        "address 10.0.0.2:7789; } }\n",
        "drbd.conf",
    )
    assert resources[0].unsupported[0].what.startswith("include drbd.d/*.res (not followed")


def test_cib_rules_and_sets_are_kept_for_the_report() -> None:
    config = cib.parse(
        """<cib><configuration><resources>
<primitive id="a" class="systemd" type="a"/>
</resources><constraints>
<rsc_location id="l" rsc="a"><rule id="r" score="-INFINITY"><expression id="e" attribute="#uname"
 operation="eq" value="n3"/></rule></rsc_location>
<rsc_order id="o"><resource_set id="s"><resource_ref id="a"/></resource_set></rsc_order>
</constraints><fencing-topology/></configuration></cib>""",
        "c.xml",
    )
    assert config.locations[0].rule == "-INFINITY: #uname eq n3"
    assert [(u.what, u.source.line) for u in config.unsupported] == [
        ("rsc_order o over a resource set", 6),
        ("<fencing-topology> section", 7),
    ]


CRM_WORDS = st.sampled_from(
    [
        "node",
        "primitive",
        "group",
        "clone",
        "ms",
        "colocation",
        "order",
        "location",
        "property",
        "rsc_defaults",
        "op_defaults",
        "params",
        "meta",
        "op",
        "monitor",
        "inf:",
        "-inf:",
        "100:",
        "Mandatory:",
        "a",
        "b",
        "g_a",
        "ocf:linbit:drbd",
        "IPaddr2",
        "Filesystem",
        "systemd:x",
        "stonith:fence",
        "pgsqlms",
        "ip=10.0.0.1",
        "cidr_netmask=24",
        "nic=eth0",
        "drbd_resource=r",
        "device=/dev/drbd0",
        "directory=/srv",
        "fstype=xfs",
        "options=bind",
        "promotable=true",
        "a:Master",
        "rule",
        "#uname",
        "eq",
        "\\",
        "\n",
        '"',
        "=",
        ":",
        "(",
        ")",
    ]
)
DRBD_WORDS = st.sampled_from(
    [
        "resource",
        "r",
        "on",
        "a",
        "b",
        "{",
        "}",
        ";",
        "device",
        "/dev/drbd0",
        "minor",
        "0",
        "disk",
        "none",
        "address",
        "10.0.0.1:7789",
        "[fd00::1]:7789",
        "ipv6",
        "node-id",
        "volume",
        "net",
        "protocol",
        "C",
        "options",
        "quorum",
        "majority",
        "connection-mesh",
        "hosts",
        "include",
        '"',
        "#",
        "\n",
    ]
)
HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def imports_cleanly(parse_and_map: object) -> None:
    """Either a result or an InvalidInput: never another exception."""
    try:
        parse_and_map()  # type: ignore[operator]
    except InvalidInput as error:
        assert str(error)


@HOSTILE
@given(st.one_of(st.text(), st.lists(CRM_WORDS, max_size=60).map(" ".join)))
def test_hostile_crm_text_gives_a_clean_error_or_a_result(text: str) -> None:
    imports_cleanly(lambda: mapping.map_config(crm.parse(text, "h.crm"), [], "ns"))


@HOSTILE
@given(st.one_of(st.text(), st.lists(DRBD_WORDS, max_size=60).map(" ".join)))
def test_hostile_drbd_text_gives_a_clean_error_or_a_result(text: str) -> None:
    imports_cleanly(lambda: drbd.parse(text, "h.res"))


@HOSTILE
@given(st.text(), st.sampled_from(["<cib><configuration>", "<cib><configuration><resources>", "<cib>"]))
def test_hostile_cib_text_gives_a_clean_error_or_a_result(text: str, prefix: str) -> None:
    imports_cleanly(lambda: mapping.map_config(cib.parse(prefix + text, "h.xml"), [], "ns"))
    imports_cleanly(lambda: cib.parse(text, "h.xml"))


@pytest.mark.parametrize("depth", [10_000])
def test_deeply_nested_drbd_and_xml_do_not_recurse(depth: int) -> None:
    with pytest.raises(InvalidInput):
        drbd.parse("resource r " + "{ x " * depth, "deep.res")
    config = cib.parse("<cib><configuration>" + "<a>" * depth + "</a>" * depth + "</configuration></cib>", "d.xml")
    assert [u.what for u in config.unsupported] == ["<a> section"]
