"""`tandem import` on three realistic Pacemaker clusters: what each construct becomes."""

from __future__ import annotations

import pytest

from tandem.importer import check
from tests.unit.import_helpers import documents, imported, report_lines, spec


@pytest.fixture(scope="module")
def mail() -> object:
    return imported("mail.crm", ("mail-store.res",))


@pytest.fixture(scope="module")
def apps() -> object:
    return imported("apps.crm", ("apps-84.res",))


@pytest.fixture(scope="module")
def paf() -> object:
    return imported("paf.crm")


def test_mail_pair_becomes_one_cluster_with_volume_mount_bind_mounts_vip_and_fifteen_services(mail) -> None:
    assert [c.name for c in mail.clusters] == ["mail"]
    assert set(documents(mail)) == {("DRBDVolume", "mail-store"), ("FloatingIP", "mail-vip"), ("HACluster", "mail")}
    chain = spec(mail, "HACluster", "mail")["chain"]
    assert list(chain) == ["volumes", "mounts", "bindMounts", "floatingIPs", "services", "monitors"]
    # The monitors' timeouts carry over (the primary's DRBD monitor only); tandem's period stays.
    assert chain["monitors"] == {
        "volumes": {"timeoutSeconds": 20},
        "mounts": {"timeoutSeconds": 40},
        "floatingIPs": {"timeoutSeconds": 20},
    }
    assert chain["volumes"] == ["mail-store"]
    assert chain["mounts"] == [
        {"volume": "mail-store", "mountPoint": "/srv/mail", "fsType": "xfs", "options": ["noatime", "nodiratime"]}
    ]
    assert len(chain["bindMounts"]) == 7
    assert chain["bindMounts"][0] == {"source": "/srv/mail/spool", "target": "/var/spool/postfix"}
    assert chain["floatingIPs"] == ["mail-vip"]
    services = chain["services"]
    assert len(services) == 15
    assert [s["name"] for s in services[:3]] == ["redis-server", "clamav-daemon", "clamav-freshclam"]
    by_name = {s["name"]: s["unit"] for s in services}
    assert by_name["saslauthd"] == "saslauthd.service"  # lsb:
    assert by_name["memcached"] == "memcached.service"  # service:
    assert by_name["php8.2-fpm"] == "php8.2-fpm.service"  # a dot that is not a unit suffix
    assert by_name["mail-jobs"] == "mail-jobs.timer"
    assert spec(mail, "FloatingIP", "mail-vip") == {
        "cluster": "mail",
        "addresses": [{"start": "198.18.0.10"}],
        "prefixLength": 24,
        "interface": "mgmt",
    }


def test_mail_quorum_node_becomes_the_drbd_tiebreaker_and_not_a_cluster_node(mail) -> None:
    cluster = spec(mail, "HACluster", "mail")
    assert cluster["nodes"] == [
        {"name": "mail1", "replicationAddress": "198.19.0.11"},
        {"name": "mail2", "replicationAddress": "198.19.0.12"},
    ]
    volume = spec(mail, "DRBDVolume", "mail-store")
    assert volume["tiebreaker"] == {"name": "mail-quorum", "address": "198.19.0.13", "nodeId": 2}
    assert volume["quorum"] == {"mode": "majority", "onNoQuorum": "io-error"}
    assert volume["nodes"][0] == {"name": "mail1", "disk": "/dev/vg0/mail-store", "address": "198.19.0.11", "nodeId": 0}
    assert (volume["minor"], volume["port"], volume["protocol"]) == (0, 7789, "C")
    assert volume["splitBrain"] == {
        "afterSb0pri": "discard-zero-changes",
        "afterSb1pri": "discard-secondary",
        "afterSb2pri": "disconnect",
    }
    assert any(
        "node mail-quorum: DRBD tiebreaker (witness) of mail-store" in line for line in report_lines(mail, carried=True)
    )


def test_stickiness_above_the_location_score_means_no_auto_failback(mail) -> None:
    cluster = spec(mail, "HACluster", "mail")
    assert cluster["primary"] == "mail1"
    assert cluster["failover"] == {"autoFailback": False}  # 25 resources x stickiness 100 > 50


def test_two_groups_colocated_and_ordered_become_depends_on_and_a_clone_runs_on_all_nodes(apps) -> None:
    assert [c.name for c in apps.clusters] == ["db", "app"]
    db, app = spec(apps, "HACluster", "db"), spec(apps, "HACluster", "app")
    assert "dependsOn" not in db
    assert app["dependsOn"] == {"name": "db"}
    assert db["chain"]["services"] == [{"name": "mariadb", "unit": "mariadb.service"}]
    assert app["chain"]["services"][-1] == {"name": "nginx", "unit": "nginx.service", "runOn": "AllNodes"}
    assert len(app["chain"]["services"]) == 7
    assert db["chain"]["mounts"] == [{"volume": "db-data", "mountPoint": "/srv/db", "fsType": "xfs"}]  # by-res path
    assert app["chain"]["mounts"] == [{"volume": "app-data", "mountPoint": "/srv/app", "fsType": "ext4"}]
    assert spec(apps, "FloatingIP", "db-vip")["prefixLength"] == 24  # from 255.255.255.0
    assert (db["primary"], db["failover"]) == ("app1", {"autoFailback": True})  # no stickiness, score 100


def test_drbd_84_resources_in_one_file_get_node_ids_in_order_and_quorum_off(apps) -> None:
    db_data, app_data = spec(apps, "DRBDVolume", "db-data"), spec(apps, "DRBDVolume", "app-data")
    assert [n["nodeId"] for n in db_data["nodes"]] == [0, 1]
    assert (db_data["minor"], db_data["port"], db_data["protocol"]) == (2, 7791, "C")
    assert (app_data["minor"], app_data["port"], app_data["protocol"]) == (3, 7792, "B")
    assert db_data["quorum"] == {"mode": "off"} and "tiebreaker" not in db_data
    assert db_data["cluster"] == "db" and app_data["cluster"] == "app"
    assert "apps-84.res:23 DRBD disk: resync-rate 100M: no DRBDVolume field for it" in report_lines(apps, carried=False)


def test_one_hundred_ipaddr2_primitives_become_one_floating_ip_range_with_paf_postgres(paf) -> None:
    assert spec(paf, "FloatingIP", "pg-vips") == {
        "cluster": "pg",
        "addresses": [{"start": "198.18.1.1", "end": "198.18.1.100"}],
        "prefixLength": 24,
        "interface": "bond0",
    }
    cluster = spec(paf, "HACluster", "pg")
    assert cluster["chain"] == {
        "floatingIPs": ["pg-vips"],
        "postgres": {
            "binDirectory": "/usr/lib/postgresql/15/bin",
            "dataDirectory": "/var/lib/postgresql/15/main",
            "configDirectory": "/etc/postgresql/15/main",
            "port": 5432,
            "credentialsSecret": "pg-postgres-replication",
            "startTimeoutSeconds": 60,
            "monitor": {"timeoutSeconds": 10},
        },
    }
    assert cluster["primary"] == "pg1"


def test_a_source_order_tandem_cannot_keep_is_reported_once(paf) -> None:
    inversions = [line for line in report_lines(paf, carried=False) if "start order" in line]
    assert inversions == [
        "paf.crm:15 start order of pg-vip-001: Pacemaker starts this floating IP (and any floating "
        "IP after it) after PostgreSQL pgsqld; tandem always starts floating IPs before PostgreSQLs"
    ]


def test_contiguous_addresses_merge_into_ranges_and_gaps_split_them() -> None:
    from tandem.importer import crm, mapping

    text = "node a\nnode b\n" + "".join(
        f"primitive ip{i} IPaddr2 params ip={ip} cidr_netmask=24 nic=eth0\n"
        for i, ip in enumerate(["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.9", "2001:db8::1"])
    )
    text += "group g_web " + " ".join(f"ip{i}" for i in range(5)) + "\n"
    result = mapping.map_config(crm.parse(text, "x.crm"), [], "ns")
    assert spec(result, "FloatingIP", "web-vips")["addresses"] == [
        {"start": "10.0.0.1", "end": "10.0.0.3"},
        {"start": "10.0.0.9"},
        {"start": "2001:db8::1"},
    ]


def test_crm_text_and_cib_xml_of_the_same_cluster_give_identical_manifests() -> None:
    from_crm = imported("apps.crm", ("apps-84.res",))
    from_cib = imported(cib_file="apps.cib.xml", drbd_files=("apps-84.res",))
    assert documents(from_crm) == documents(from_cib)
    assert [e.construct for e in from_crm.report if e.carried] != []
    assert any(
        e.source.file == "apps.cib.xml" and e.source.line == 53 and "ms_drbd_db" in e.construct for e in from_cib.report
    )


@pytest.mark.parametrize("fixture", ["mail", "apps", "paf"])
def test_every_imported_set_passes_the_offline_check(fixture: str, request: pytest.FixtureRequest) -> None:
    result = request.getfixturevalue(fixture)
    assert check.offline_problems(documents(result).values()) == []


def test_report_lists_stonith_devices_and_properties_with_file_and_line(mail) -> None:
    left = report_lines(mail, carried=False)
    assert (
        "mail.crm:46 primitive st_ipmi_mail1 (stonith:fence_ipmilan): STONITH device: tandem fences a node "
        "itself (spec.failover.fence: SysrqReboot or Watchdog)" in left
    )
    assert any(line.startswith("mail.crm:66 property stonith-enabled=true") for line in left)
    assert any(line.startswith("mail.crm:70 rsc_defaults migration-threshold=3") for line in left)
    assert any(line.startswith("mail-store.res:12 DRBD net: verify-alg sha256") for line in left)
    assert (
        "mail.crm:8 op monitor interval=31s role=Unpromoted timeout=20s of p_drbd_mail: tandem monitors "
        "the primary's chain; a standby is seen through its replication status" in left
    )
    assert any(
        line.startswith(
            "mail.crm:39 op monitor interval=30s timeout=100s of p_postfix: tandem watches the unit's ActiveState"
        )
        for line in left
    )


def test_report_lists_unknown_agents_rules_and_unmodelled_keywords_with_file_and_line() -> None:
    from tandem.importer import crm, mapping

    text = """node a
node b
primitive p_ip IPaddr2 params ip=10.0.0.5 cidr_netmask=24 nic=eth0 arp_count=5
primitive p_apache apache params configfile=/etc/apache2/apache2.conf
group g_web p_ip p_apache
location l_rule g_web rule -inf: #uname eq c
fencing_topology a: st1 b: st2
"""
    result = mapping.map_config(crm.parse(text, "web.crm"), [], "ns")
    left = report_lines(result, carried=False)
    assert (
        "web.crm:4 primitive p_apache (ocf:heartbeat:apache): unknown agent: no tandem equivalent; if it "
        "manages a systemd unit, use systemd:UNIT instead" in left
    )
    assert "web.crm:3 p_ip param arp_count=5: no tandem field for it" in left
    assert any(line.startswith("web.crm:6 location l_rule g_web rule -inf: #uname eq c") for line in left)
    assert any(line.startswith("web.crm:7 fencing_topology a: st1 b:") for line in left)


def test_every_source_line_of_a_construct_is_accounted_for_in_the_report(mail) -> None:
    """Nothing dropped silently: each statement's first line appears in the report."""
    from tandem.importer import crm
    from tests.unit.import_helpers import FIXTURES

    statements = crm.tokenize((FIXTURES / "mail.crm").read_text(), "mail.crm")
    reported = {e.source.line for e in mail.report if e.source.file == "mail.crm"}
    silent = [s[0].source.line for s in statements if not {t.source.line for t in s} & reported]
    assert len(statements) == 42 and silent == []


def test_paf_without_drbd_reports_the_replication_addresses_it_cannot_know(paf) -> None:
    assert (
        "paf.crm:3 replication addresses of pg1, pg2: PostgreSQL streams between spec.nodes[].replicationAddress, "
        "which only a DRBD file gives: set them before applying (the agent refuses the chain without them)"
        in report_lines(paf, carried=False)
    )


def test_pgsql_agent_maps_its_directories_user_and_synchronous_mode() -> None:
    from tandem.importer import crm, mapping

    text = """node db1
node db2
primitive p_pgsql pgsql \\
	params pgctl=/usr/lib/postgresql/15/bin/pg_ctl pgdata=/var/lib/postgresql/15/main \\
	config=/etc/postgresql/15/main/postgresql.conf pgport=5433 rep_mode=sync repuser=streamer \\
	node_list="db1 db2" master_ip=10.0.0.50
ms ms_pgsql p_pgsql meta notify=true
primitive p_vip IPaddr2 params ip=10.0.0.50 cidr_netmask=24 nic=eth1
group g_db p_vip
colocation c inf: g_db ms_pgsql:Master
"""
    result = mapping.map_config(crm.parse(text, "pg.crm"), [], "ns")
    assert spec(result, "HACluster", "db")["chain"]["postgres"] == {
        "binDirectory": "/usr/lib/postgresql/15/bin",
        "dataDirectory": "/var/lib/postgresql/15/main",
        "configDirectory": "/etc/postgresql/15/main",
        "replicationUser": "streamer",
        "synchronous": True,
        "port": 5433,
        "credentialsSecret": "db-postgres-replication",
    }
    left = report_lines(result, carried=False)
    assert "pg.crm:6 p_pgsql param node_list=db1 db2: no tandem field for it" in left
    assert "pg.crm:6 p_pgsql param master_ip=10.0.0.50: no tandem field for it" in left


def test_a_cloned_group_of_services_runs_on_all_nodes_and_is_reported() -> None:
    from tandem.importer import crm, mapping

    text = """node a
node b
primitive p_ip IPaddr2 params ip=10.0.0.5 cidr_netmask=24 nic=eth0
primitive p_exporter systemd:node-exporter
primitive p_agent lsb:monitoring-agent
group g_web p_ip
group g_monitoring p_exporter p_agent
clone cl_monitoring g_monitoring
order o inf: g_web cl_monitoring
"""
    result = mapping.map_config(crm.parse(text, "m.crm"), [], "ns")
    assert [c.name for c in result.clusters] == ["web"]
    assert spec(result, "HACluster", "web")["chain"]["services"] == [
        {"name": "node-exporter", "unit": "node-exporter.service", "runOn": "AllNodes"},
        {"name": "monitoring-agent", "unit": "monitoring-agent.service", "runOn": "AllNodes"},
    ]
    assert "m.crm:7 group g_monitoring: cloned by cl_monitoring: its members in chain order" in report_lines(
        result, carried=True
    )


def test_an_order_into_one_group_member_places_the_unit_just_before_it() -> None:
    """`ms_pgsql:promote p_http:start` orders PostgreSQL before the group's service only: the
    group's mount and VIP still start first, as in tandem's chain, so no inversion is reported."""
    from tandem.importer import crm, mapping

    text = """node web1
node web2
primitive p_fs Filesystem params device=/dev/drbd0 directory=/srv/web fstype=ext4
primitive p_vip IPaddr2 params ip=10.0.0.50 cidr_netmask=24 nic=eth1
primitive p_pgsql pgsql params pgdata=/var/lib/postgresql/15/main
ms ms_pgsql p_pgsql meta notify=true
primitive p_http systemd:nginx
group g_web p_fs p_vip p_http
colocation c inf: ms_pgsql:Promoted g_web
order o Mandatory: ms_pgsql:promote p_http:start
"""
    result = mapping.map_config(crm.parse(text, "web.crm"), [], "ns")
    left = report_lines(result, carried=False)
    assert not [line for line in left if "start order" in line], left
    # Ordered before the whole group instead, PostgreSQL does start before the mount.
    whole = text.replace("p_http:start", "g_web:start")
    left = report_lines(mapping.map_config(crm.parse(whole, "web.crm"), [], "ns"), carried=False)
    assert [line for line in left if line.startswith("web.crm:3 start order of p_fs")], left


def test_two_members_of_one_kind_with_different_monitor_timeouts_keep_the_first_and_say_so() -> None:
    from tandem.importer import crm, mapping

    text = """node a
node b
primitive p_ip1 IPaddr2 params ip=198.18.0.5 cidr_netmask=24 nic=eth0 op monitor interval=10s timeout=20s
primitive p_ip2 IPaddr2 params ip=198.18.0.6 cidr_netmask=24 nic=eth0 op monitor interval=10s timeout=30s
primitive p_web systemd:nginx op start timeout=45s op stop timeout=60s
group g_web p_ip1 p_ip2 p_web
"""
    result = mapping.map_config(crm.parse(text, "web.crm"), [], "ns")
    chain = spec(result, "HACluster", "web")["chain"]
    assert chain["monitors"] == {"floatingIPs": {"timeoutSeconds": 20}}
    assert chain["services"] == [{"name": "nginx", "unit": "nginx.service", "startTimeoutSeconds": 45}]
    left = report_lines(result, carried=False)
    assert (
        "web.crm:4 op monitor interval=10s timeout=30s of p_ip2: monitors.floatingIPs is one setting for all "
        "floating IPs of the cluster: it keeps timeoutSeconds 20 from an earlier floating IP" in left
    )
    assert any(
        line.startswith("web.crm:5 op stop timeout=60s of p_web: a stop must fit spec.leases.demotionTimeoutMs")
        for line in left
    )
    assert check.offline_problems(documents(result).values()) == []
