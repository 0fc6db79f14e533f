"""PostgreSQL driver, pure logic: rendered settings, conninfo, hba/ident/passfile, status parsing.

No server runs here; tests/lab/test_postgres.py runs the same code against real servers.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from tandem.api.hacluster import PostgresSpec
from tandem_agent.drivers.postgres import (
    INCLUDE_LINE,
    ClientRule,
    PostgresConfig,
    PostgresError,
    format_lsn,
    parse_controldata,
    parse_lsn,
    primary_conninfo,
    quote_setting,
    render_hba,
    render_ident,
    render_pgpass,
    render_settings,
    reported_lag,
    scram_verifier,
    scrub_auto_conf,
    status_from_row,
    sync_standby_names,
    verifier_matches,
    with_include,
)


def config(**overrides: object) -> PostgresConfig:
    values: dict[str, object] = {
        "node_name": "node1",
        "data_dir": Path("/var/lib/tandem/pg/data"),
        "port": 5433,
        "listen_addresses": ("198.19.20.2", "127.0.0.1"),
        "replication_peers": ("198.19.20.2", "198.19.20.3"),
    }
    values.update(overrides)
    return PostgresConfig(**values)  # type: ignore[arg-type]


def parse_conf(text: str) -> dict[str, str]:
    """Minimal postgresql.conf reader for the lines the driver writes (key = value)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def unquote(value: str) -> str:
    assert value.startswith("'") and value.endswith("'"), value
    body = value[1:-1]
    return body.replace("''", "'").replace("\\\\", "\\")


# ----------------------------------------------------------------------------- LSNs


@pytest.mark.parametrize(
    ("text", "value"),
    [("0/0", 0), ("0/3000158", 0x3000158), ("16/B374D848", (0x16 << 32) | 0xB374D848)],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text
    assert parse_lsn(text.lower()) == value


@pytest.mark.parametrize("bad", ["", "3000158", "0/", "/1", "0/1/2", "G/1", "123456789/0"])
def test_parse_lsn_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not an LSN"):
        parse_lsn(bad)


def test_lsn_order_is_numeric_not_textual() -> None:
    assert parse_lsn("0/A000000") > parse_lsn("0/9FFFFFF")
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


# ----------------------------------------------------------------------------- lag


def test_lag_is_none_on_a_primary() -> None:
    assert reported_lag(False, False, None, None, 12.0) is None


def test_lag_is_zero_when_streaming_and_caught_up_even_if_primary_idle() -> None:
    # The raw now() - last replay timestamp is an hour: the primary was just idle.
    assert reported_lag(True, True, "0/3000158", "0/3000158", 3600.0) == 0.0
    # Right after a restart the receive position restarts at a segment boundary below replay.
    assert reported_lag(True, True, "0/3000000", "0/3000158", 3600.0) == 0.0


def test_lag_is_raw_age_when_replay_is_behind() -> None:
    assert reported_lag(True, True, "0/4000000", "0/3000158", 2.5) == 2.5


def test_lag_is_raw_age_when_not_streaming() -> None:
    # Caught up with what it received, but it receives nothing: it may be far behind.
    assert reported_lag(True, False, "0/3000158", "0/3000158", 42.0) == 42.0


def test_lag_unknown_before_any_replayed_transaction() -> None:
    assert reported_lag(True, False, None, "0/3000158", None) is None
    assert reported_lag(True, True, "0/4000000", "0/3000158", None) is None


def test_lag_clamps_clock_skew_to_zero() -> None:
    assert reported_lag(True, True, "0/4000000", "0/3000158", -0.3) == 0.0


# ----------------------------------------------------------------------------- status


def test_status_of_a_primary_row() -> None:
    st = status_from_row(
        {
            "in_recovery": False,
            "current_lsn": "0/5000060",
            "current_tli_hex": "0000000A",
            "receive_lsn": None,
            "replay_lsn": None,
            "replay_age_s": None,
            "streaming_standbys": 1,
            "sync_standbys": ["node2"],
            "receiver_status": None,
            "upstream": None,
            "received_tli": None,
            "checkpoint_tli": 9,
        }
    )
    assert st.running and st.role == "primary"
    assert st.timeline == 10  # from the WAL file name, not the (older) checkpoint
    assert st.current_lsn == "0/5000060"
    assert st.streaming_standbys == 1 and st.sync_standbys == ("node2",)
    assert st.replay_lag_s is None and st.receive_lsn is None and not st.receiving


def test_status_of_a_streaming_standby_row() -> None:
    st = status_from_row(
        {
            "in_recovery": True,
            "current_lsn": None,
            "current_tli_hex": None,
            "receive_lsn": "0/5000100",
            "replay_lsn": "0/5000060",
            "replay_age_s": 1.25,
            "streaming_standbys": 0,
            "sync_standbys": [],
            "receiver_status": "streaming",
            "upstream": "198.19.20.2:5432",
            "received_tli": 3,
            "checkpoint_tli": 2,
        }
    )
    assert st.role == "standby" and st.receiving
    assert st.timeline == 3
    assert st.upstream == "198.19.20.2:5432"
    assert (st.receive_lsn, st.replay_lsn) == ("0/5000100", "0/5000060")
    assert st.replay_lag_s == 1.25
    assert st.streaming_standbys == 0 and st.current_lsn is None


def test_status_of_a_disconnected_standby_uses_checkpoint_timeline() -> None:
    st = status_from_row(
        {
            "in_recovery": True,
            "receive_lsn": None,
            "replay_lsn": "0/5000060",
            "replay_age_s": 30.0,
            "streaming_standbys": 0,
            "sync_standbys": None,
            "receiver_status": None,
            "upstream": None,
            "received_tli": None,
            "checkpoint_tli": 2,
        }
    )
    assert st.timeline == 2 and not st.receiving and st.replay_lag_s == 30.0
    assert st.sync_standbys == ()


CONTROLDATA = """\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7439845209358012345
Database cluster state:               shut down in recovery
pg_control last modified:             Sun 22 Nov 2026 03:06:12 AM UTC
Latest checkpoint location:           0/30000E0
Latest checkpoint's REDO location:    0/30000A8
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Data page checksum version:           1
"""


def test_parse_controldata() -> None:
    cd = parse_controldata(CONTROLDATA)
    assert cd.cluster_state == "shut down in recovery"
    assert cd.timeline == 2
    assert cd.checkpoint_lsn == "0/30000E0"  # not the REDO location


def test_parse_controldata_refuses_foreign_text() -> None:
    with pytest.raises(PostgresError, match="LC_ALL=C"):
        parse_controldata("Estado del clúster de base de datos: apagado\n")


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "on"),
        (False, "off"),
        (10, "10"),
        (0.5, "0.5"),
        ("replica", "'replica'"),
        ("it's", "'it''s'"),
        ("C:\\dir", "'C:\\\\dir'"),
    ],
)
def test_quote_setting(value: str | int | float | bool, rendered: str) -> None:
    assert quote_setting(value) == rendered


def test_primary_settings() -> None:
    conf = parse_conf(render_settings(config(), None))
    assert conf["listen_addresses"] == "'198.19.20.2,127.0.0.1'"
    assert conf["port"] == "5433"
    assert conf["unix_socket_directories"] == "'/var/lib/tandem/pg/data.run'"
    assert conf["cluster_name"] == "'node1'"
    assert conf["wal_level"] == "'replica'"
    assert conf["wal_log_hints"] == "on"  # pg_rewind needs it
    assert conf["hot_standby"] == "on"
    # Explicitly empty so nothing earlier in postgresql.conf makes a primary stream.
    assert conf["primary_conninfo"] == "''"
    assert "synchronous_standby_names" not in conf  # ALTER SYSTEM owns it
    # The rules tandem writes win over whatever postgresql.conf names.
    assert conf["hba_file"] == "'/var/lib/tandem/pg/data/pg_hba.conf'"
    assert conf["ident_file"] == "'/var/lib/tandem/pg/data/pg_ident.conf'"


def test_debian_layout_keeps_the_files_beside_postgresql_conf() -> None:
    cfg = config(data_dir=Path("/var/lib/postgresql/15/main"), config_dir=Path("/etc/postgresql/15/main"))
    assert cfg.conf_dir == Path("/etc/postgresql/15/main")
    conf = parse_conf(render_settings(cfg, None))
    assert conf["hba_file"] == "'/etc/postgresql/15/main/pg_hba.conf'"
    assert conf["ident_file"] == "'/etc/postgresql/15/main/pg_ident.conf'"
    # The socket, the log and the passfile stay beside the data directory.
    assert cfg.passfile == Path("/var/lib/postgresql/15/main.run/pgpass")


def test_standby_settings_carry_the_conninfo() -> None:
    cfg = config(node_name="node2")
    info = primary_conninfo(cfg, "198.19.20.2", 5432)
    conf = parse_conf(render_settings(cfg, info))
    assert unquote(conf["primary_conninfo"]) == info
    assert conf["recovery_target_timeline"] == "'latest'"


def test_settings_are_deterministic_and_extras_override() -> None:
    cfg = config(settings={"shared_buffers": "16MB", "max_wal_senders": 4, "fsync": False})
    text = render_settings(cfg, None)
    assert text == render_settings(cfg, None)
    conf = parse_conf(text)
    assert conf["shared_buffers"] == "'16MB'"
    assert conf["max_wal_senders"] == "4"
    assert conf["fsync"] == "off"
    assert text.count("max_wal_senders") == 1


def test_settings_reject_bad_parameter_names() -> None:
    with pytest.raises(ValueError, match="parameter name"):
        render_settings(config(settings={"port = 1\nfsync": "off"}), None)


def test_conninfo_round_trips_through_libpq() -> None:
    info = primary_conninfo(config(node_name="node2"), "198.19.20.2", 5432)
    parsed = conninfo_to_dict(info)
    assert parsed["host"] == "198.19.20.2"
    assert parsed["port"] == "5432"
    assert parsed["user"] == "replicator"
    assert parsed["application_name"] == "node2"
    assert parsed["passfile"] == "/var/lib/tandem/pg/data.run/pgpass"
    assert "password" not in parsed


HOSTILE = [
    "s3cr3t 'x'",
    'dq"dq',
    "back\\slash\\",
    "co:lo:n",
    "#hash",
    "*:*:*:x:y",
    " spaced ",
    "'; ALTER ROLE postgres PASSWORD 'x'; --",
    "$(reboot)",
]


@pytest.mark.parametrize("password", HOSTILE)
def test_conninfo_uses_a_passfile_never_the_password(password: str) -> None:
    cfg = config(replication_password=password, runtime_dir=Path("/run/tandem pg"))
    info = primary_conninfo(cfg, "198.19.20.2", 5432)
    assert password.strip() not in info
    assert conninfo_to_dict(info)["passfile"] == "/run/tandem pg/pgpass"
    # Nothing of it reaches the settings tandem writes (pg_basebackup copies those).
    assert password.strip() not in render_settings(cfg, info)


def pgpass_fields(line: str) -> list[str]:
    """Split one passfile line as libpq does: ':' separates, '\\' escapes the next character."""
    fields, current, escaped = [], "", False
    for char in line.removesuffix("\n"):
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]


@pytest.mark.parametrize("password", HOSTILE)
def test_pgpass_reads_back_as_the_password(password: str) -> None:
    line = render_pgpass("replicator", password)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert pgpass_fields(line) == ["*", "*", "*", "replicator", password]


def test_pgpass_escapes_separators() -> None:
    assert render_pgpass("rep", "a:b\\c") == "*:*:*:rep:a\\:b\\\\c\n"


@pytest.mark.parametrize("password", ["line\nbreak", "cr\r", "tab\there", "nul\0", "", "caf\u00e9", "x" * 1025])
def test_passwords_a_passfile_or_scram_cannot_carry_are_refused(password: str) -> None:
    with pytest.raises(ValueError, match="replication password"):
        config(replication_password=password)
    with pytest.raises(ValueError, match="replication password"):
        render_pgpass("replicator", password)
    with pytest.raises(ValueError, match="replication password"):
        scram_verifier(password)


def test_hba_admits_replication_only_from_the_peers_by_scram() -> None:
    cfg = config(replication_peers=("198.19.20.2", "2001:db8::7", "198.19.20.2"))
    rules = [line.split() for line in render_hba(cfg).splitlines() if line and not line.startswith("#")]
    assert rules == [
        ["local", "all", "all", "peer", "map=tandem"],
        ["local", "replication", "all", "peer", "map=tandem"],
        ["host", "replication", '"replicator"', "198.19.20.2/32", "scram-sha-256"],
        ["host", "postgres", '"replicator"', "198.19.20.2/32", "scram-sha-256"],  # pg_rewind
        ["host", "replication", '"replicator"', "2001:db8::7/128", "scram-sha-256"],
        ["host", "postgres", '"replicator"', "2001:db8::7/128", "scram-sha-256"],
    ]


def test_hba_client_access_is_scram_and_never_trust() -> None:
    cfg = config(
        client_access=(
            ClientRule("mail", "webmail", "198.18.20.9/24"),
            ClientRule("postgres", "tandem_app", "2001:db8::/64"),
        )
    )
    rules = [line.split() for line in render_hba(cfg).splitlines() if line and not line.startswith("#")]
    assert rules[-2:] == [
        ["host", '"mail"', '"webmail"', "198.18.20.0/24", "scram-sha-256"],
        ["host", '"postgres"', '"tandem_app"', "2001:db8::/64", "scram-sha-256"],
    ]
    assert not any("trust" in rule or "password" in rule or "md5" in rule for rule in rules)
    assert all(rule[0] == "local" or rule[-1] == "scram-sha-256" for rule in rules)


@pytest.mark.parametrize(
    ("database", "user", "network", "message"),
    [
        ("all", "u", "10.0.0.0/8", "database name"),
        ("d", "all", "10.0.0.0/8", "PostgreSQL name"),
        ('d" all', "u", "10.0.0.0/8", "database name"),
        ("d", "u\nhost all all 0.0.0.0/0 trust", "10.0.0.0/8", "PostgreSQL name"),
        ("d", "u", "10.0.0.0/8 trust", "not a network"),
    ],
)
def test_client_rules_refuse_what_would_inject_a_rule(database: str, user: str, network: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientRule(database, user, network)


def test_ident_maps_admins_to_superuser_and_others_to_themselves() -> None:
    rows = [
        line.split()
        for line in render_ident(config(admin_os_users=("root", "tandem"))).splitlines()
        if not line.startswith("#")
    ]
    assert ["tandem", "root", "postgres"] in rows
    assert ["tandem", "tandem", "postgres"] in rows
    assert ["tandem", "postgres", "postgres"] in rows
    assert rows[-1] == ["tandem", "/^(.*)$", "\\1"]


# ----------------------------------------------------------------------------- SCRAM


@pytest.mark.parametrize("password", HOSTILE)
def test_scram_verifier_is_what_libpq_computes(password: str) -> None:
    """libpq's own PQencryptPasswordConn (offline) with a random salt; ours with that salt."""
    conn = pq.PGconn.connect_start(b"host=/nonexistent port=1")
    theirs = conn.encrypt_password(password.encode(), b"replicator", b"scram-sha-256").decode()
    iterations, salt = theirs.split("$")[1].split(":")
    assert scram_verifier(password, base64.b64decode(salt), int(iterations)) == theirs
    assert verifier_matches(theirs, password)
    assert not verifier_matches(theirs, password + "x")


def test_verifier_matching_is_salted_and_refuses_other_formats() -> None:
    ours = scram_verifier("pw")
    assert ours != scram_verifier("pw")  # a fresh salt each time
    assert verifier_matches(ours, "pw")
    assert not verifier_matches(None, "pw")
    assert not verifier_matches("md5" + "0" * 32, "pw")
    assert not verifier_matches("pw", "pw")


@pytest.mark.parametrize(
    ("names", "num", "method", "value"),
    [
        ([], 1, "ANY", ""),
        (["node2"], 1, "ANY", 'ANY 1 ("node2")'),
        (["node1", "node2", "node1"], 1, "ANY", 'ANY 1 ("node1", "node2")'),
        (["a", "b"], 2, "FIRST", 'FIRST 2 ("a", "b")'),
        (['we"ird'], 1, "ANY", 'ANY 1 ("we""ird")'),
    ],
)
def test_sync_standby_names(names: list[str], num: int, method: str, value: str) -> None:
    assert sync_standby_names(names, num, method) == value  # type: ignore[arg-type]


def test_sync_standby_names_bounds() -> None:
    with pytest.raises(ValueError, match="num_sync"):
        sync_standby_names(["a"], 2)
    with pytest.raises(ValueError, match="num_sync"):
        sync_standby_names(["a"], 0)
    with pytest.raises(ValueError, match="ANY or FIRST"):
        sync_standby_names(["a"], 1, "SOME")  # type: ignore[arg-type]


def test_scrub_auto_conf_drops_only_streaming_settings() -> None:
    text = (
        "# Do not edit this file manually!\n"
        "synchronous_standby_names = 'ANY 1 (\"node2\")'\n"
        "primary_conninfo = 'host=198.19.20.2 user=replicator'\n"
        "  primary_slot_name = 'n2'\n"
        "primary_conninfo_extra_comment_is_kept = 1\n"
    )
    out = scrub_auto_conf(text)
    assert "primary_conninfo =" not in out and "primary_slot_name" not in out
    assert "synchronous_standby_names" in out
    assert "primary_conninfo_extra_comment_is_kept" in out


def test_include_is_added_once() -> None:
    base = "max_connections = 100\n# comment"
    once = with_include(base)
    assert once.startswith(base) and once.rstrip().endswith(INCLUDE_LINE)
    assert with_include(once) == once
    assert with_include("").strip().endswith(INCLUDE_LINE)


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_per_instance() -> None:
    a = config(data_dir=Path("/tmp/x/n1/data"))
    b = config(data_dir=Path("/tmp/x/n2/data"))
    assert a.run_dir != b.run_dir
    assert a.run_dir == Path("/tmp/x/n1/data.run")
    assert a.log_file.parent == a.run_dir and a.passfile.parent == a.run_dir
    assert a.superuser == "postgres"
    assert config(runtime_dir=Path("/run/pg1")).run_dir == Path("/run/pg1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"node_name": "node 1"}, "node_name"),
        ({"node_name": ""}, "node_name"),
        ({"port": 0}, "port"),
        ({"listen_addresses": ()}, "listen_addresses"),
        ({"replication_peers": ("198.19.20.0/24",)}, "not an IP address"),
        ({"replication_user": "rep; drop"}, "replication user"),
        ({"replication_user": "Replicator"}, "replication user"),
        ({"replication_user": "all"}, "replication user"),
        ({"os_user": "replicator"}, "must not be the superuser"),
        ({"config_dir": Path("etc/pg")}, "absolute"),
        ({"data_dir": Path("relative/data")}, "absolute"),
    ],
)
def test_config_rejects(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**overrides)


@pytest.mark.parametrize(
    "user",
    [
        "replicator",
        "repl_2",
        "_r",
        "all",
        "postgres",
        "pg_monitor",
        "Replicator",
        "r-1",
        "r.1",
        "r" * 63,
        "r" * 64,
        'r"',
        "r\n",
        "",
    ],
)
def test_api_and_agent_agree_on_replication_user_names(user: str) -> None:
    """A name the API server accepts is never refused later by the agent, and vice versa."""
    try:
        PostgresSpec(replication_user=user)
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        config(replication_user=user)
        agent_accepts = True
    except ValueError:
        agent_accepts = False
    assert api_accepts == agent_accepts
