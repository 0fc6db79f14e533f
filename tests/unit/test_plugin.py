"""`kubectl tandem`: the decisions, the crm_mon-like screen and the commands, without an API
server.

The objects are what the API server returns for the lab's mail pair (deploy/samples/lab/
mail.yaml) with the reports its agents write and the status the operator writes; the screen in
docs/kubectl-plugin.md is rendered from them (test_the_docs_show_what_the_renderer_prints).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from tandem.api.common import CLEANUP_ANNOTATION, SWITCHOVER_ANNOTATION, SWITCHOVER_ID_ANNOTATION
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.kube.errors import KubeError, kube_error
from tandem.kube.lease import LeaseRecord
from tandem_operator.kube import parse_cluster
from tandem_operator.kubectl import client, command, rules, status
from tandem_operator.kubectl.rules import DONE, REFUSED, TIMED_OUT, UNREACHABLE, USAGE, Outcome
from tandem_operator.messages import byte_size

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 10, 15, 0, tzinfo=UTC)
SAMPLE = list(yaml.safe_load_all((REPO / "deploy/samples/lab/mail.yaml").read_text()))


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta: float) -> str:
    return iso(NOW - timedelta(**delta))


def drbd(role: str, peer: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "mail-store",
        "role": role,
        "diskState": "UpToDate",
        "connectionState": "Connected",
        "peerRole": peer,
        "peerDiskState": "UpToDate",
        "replicationState": "Established",
        "outOfSyncBytes": 0,
        **extra,
    }


def condition(type_: str, state: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": state,
        "reason": reason,
        "message": message,
        "observedGeneration": 3,
        "lastTransitionTime": ago(hours=3, minutes=12),
    }


SERVICES = ("http", "postfix", "dovecot", "jobs")


def mail_cluster() -> dict[str, Any]:
    """The mail pair three hours after a planned switchover back to mail1, with one repair of
    PostgreSQL since; the conditions are the ones the operator's core writes for it."""
    checked = ago(seconds=1)
    mail1 = {
        "name": "mail1",
        "role": "Primary",
        "epoch": 7,
        "heartbeatTime": ago(seconds=3),
        "drbd": [drbd("Primary", "Secondary")],
        "postgres": {"role": "Primary", "timeline": 4, "lsn": "0/5A0F2C8", "streamingStandbys": 1},
        "services": [{"name": s, "state": "Running"} for s in SERVICES],
        "resources": [
            {"name": "mail-store", "kind": "Volume", "state": "Healthy", "lastCheckTime": checked},
            {"name": "/srv/mail", "kind": "Mount", "state": "Healthy", "lastCheckTime": checked},
            {"name": "mail-vips", "kind": "FloatingIP", "state": "Healthy", "lastCheckTime": checked},
            {"name": "postgresql", "kind": "PostgreSQL", "state": "Healthy", "repairs": 1, "lastCheckTime": checked},
            {"name": "http", "kind": "Service", "state": "Healthy", "lastCheckTime": checked},
        ],
        "lastRecovery": {
            "time": ago(minutes=42),
            "resource": "postgresql",
            "kind": "PostgreSQL",
            "action": "Repaired",
            "message": "PostgreSQL on mail1 failed: the postmaster is not running; restarted in place (1 of 2)",
        },
        "eligible": True,
    }
    mail2 = {
        "name": "mail2",
        "role": "Standby",
        "epoch": 7,
        "heartbeatTime": ago(seconds=1),
        "drbd": [drbd("Secondary", "Primary")],
        "postgres": {"role": "Standby", "timeline": 4, "lsn": "0/5A0F2C8", "lagSeconds": 0},
        "services": [{"name": s, "state": "Stopped"} for s in SERVICES],
        "eligible": True,
    }
    switched = "mail1 is primary at epoch 7; switchover took 2.1 s"
    in_sync = "mail2 in sync with mail1: DRBD Connected/UpToDate, PostgreSQL lag within policy"
    return {
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "HACluster",
        "metadata": {
            "name": "mail",
            "namespace": "mail",
            "generation": 3,
            "resourceVersion": "48213",
            "uid": "8d0c5a52-3f0e-4d7b-9a55-2f1c3b7e9a10",
            "creationTimestamp": ago(days=3),
            "annotations": {SWITCHOVER_ANNOTATION: "mail1", SWITCHOVER_ID_ANNOTATION: "20261130T070258Z-4be1c0a3"},
            "finalizers": ["tandem.dev/teardown"],
        },
        "spec": copy.deepcopy(SAMPLE[2]["spec"]),
        "status": {
            "observedGeneration": 3,
            "primary": "mail1",
            "epoch": 7,
            "nodes": [mail1, mail2],
            "conditions": [
                condition("Ready", "True", "Replicating", f"mail1 is primary at epoch 7; {in_sync}"),
                condition("Replicating", "True", "InSync", in_sync),
                condition("Degraded", "False", "Healthy", "every standby is in sync and eligible"),
                condition(
                    "SplitBrain", "False", "NotDetected", "at most one node claims Primary for the current epoch"
                ),
                condition("SwitchoverInProgress", "False", "Completed", switched),
                condition("ResourcesHealthy", "True", "Healthy", "every monitored resource on mail1 is Healthy (5)"),
            ],
            "lastFailover": {
                "from": "mail2",
                "to": "mail1",
                "reason": "Requested",
                "durationMs": 2140,
                "time": ago(hours=3, minutes=12),
                "planned": True,
            },
            "switchover": {
                "target": "mail1",
                "fromEpoch": 6,
                "phase": "Completed",
                "reason": "Requested",
                "message": switched,
                "requestedAt": ago(hours=3, minutes=12, seconds=2),
                "requestId": "20261130T070258Z-4be1c0a3",
            },
        },
    }


def mail_lease() -> LeaseRecord:
    return LeaseRecord(
        "mail1", 7, NOW - timedelta(hours=3, minutes=12), NOW - timedelta(seconds=1), 3, ("mail2",), "mail1,mail2"
    )


def mail_volumes(**mail1: Any) -> dict[str, DRBDVolume]:
    return {
        "mail-store": DRBDVolume.model_validate(
            {
                "spec": SAMPLE[0]["spec"],
                "status": {
                    "observedGeneration": 1,
                    "roles": "Primary/Secondary",
                    "disks": "UpToDate/UpToDate",
                    "connection": "Connected",
                    "nodes": [
                        {**drbd("Primary", "Secondary", **mail1), "name": "mail1"},
                        {**drbd("Secondary", "Primary"), "name": "mail2"},
                    ],
                },
            }
        )
    }


def mail_floating_ips() -> dict[str, FloatingIP]:
    return {
        "mail-vips": FloatingIP.model_validate(
            {
                "spec": SAMPLE[1]["spec"],
                "status": {
                    "holder": "mail1",
                    "epoch": 7,
                    "addressCount": 99,
                    "summary": "99 addresses 198.18.0.2-198.18.0.100",
                },
            }
        )
    }


def screen(body: dict[str, Any] | None = None, lease: LeaseRecord | None = None) -> str:
    view = status.cluster_view(body or mail_cluster(), lease or mail_lease(), mail_volumes(), mail_floating_ips())
    return status.render(view, NOW)


def node(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in body["status"]["nodes"] if n["name"] == name)
    return found


# --- the screen -----------------------------------------------------------------------------


def test_the_docs_show_what_the_renderer_prints() -> None:
    doc = (REPO / "docs/kubectl-plugin.md").read_text()
    shown = re.search(r"<!-- status example -->\n```\n\$ kubectl tandem status mail -n mail\n(.*?)```", doc, re.S)
    assert shown is not None, "docs/kubectl-plugin.md lost its status example"
    assert shown.group(1) == screen()


def test_the_screen_shows_every_part_of_a_healthy_pair() -> None:
    text = screen()
    assert text.startswith("HACluster mail in namespace mail: Replicating (Ready=True)\n")
    assert "Lease mail-primary: held by mail1, epoch 7, renewed 1s ago" in text
    assert re.search(r"mail2 +online +Standby +7 +1s ago +yes", text)
    assert re.search(r"postgresql +PostgreSQL +Healthy \(1 repaired\) +-", text)
    assert re.search(r"http +Service +Running, Healthy +Stopped", text)
    assert re.search(r"mail2 +Standby +4 +0/5A0F2C8 +lag 0 s", text)
    assert re.search(r"mail-store +mail2 +Secondary +UpToDate +Connected +Established +0 B", text)
    assert re.search(r"mail-vips +99 addresses 198.18.0.2-198.18.0.100 +mgmt/24 +mail1 \(epoch 7\)", text)
    assert "Last failover: mail2 -> mail1, planned (Requested), took 2.1 s, 3h ago" in text
    assert "PAUSED" not in text and "not taken up" not in text


def test_a_paused_cluster_with_a_lagging_standby_and_a_waiting_request_says_so() -> None:
    body = mail_cluster()
    body["spec"]["paused"] = True
    body["spec"]["standbyNodes"] = ["mail2"]
    body["metadata"]["annotations"][SWITCHOVER_ID_ANNOTATION] = "20261130T101458Z-0badc0de"
    body["metadata"]["annotations"][SWITCHOVER_ANNOTATION] = "mail2"
    mail2 = node(body, "mail2")
    mail2.update(
        eligible=False,
        heartbeatTime=ago(minutes=9),
        ineligibleReason="LagTooHigh",
        ineligibleMessage="PostgreSQL lag 12 s > maxLagSeconds 5",
    )
    mail2["postgres"]["lagSeconds"] = 12
    mail1 = node(body, "mail1")
    mail1["resources"][1].update(
        state="Failing", consecutiveFailures=1, message="mount /srv/mail failed: a write did not answer within 2 s"
    )
    text = screen(body)
    assert "PAUSED (spec.paused)" in text and "`kubectl tandem resume mail`" in text
    assert re.search(
        r"mail2 +standby +Standby +7 +9m ago \(stale\) +no: LagTooHigh: PostgreSQL "
        r"lag 12 s > maxLagSeconds 5",
        text,
    )
    assert re.search(r"mail2 +Standby +4 +0/5A0F2C8 +lag 12 s", text)
    assert "  mail1 /srv/mail: Failing: mount /srv/mail failed: a write did not answer within 2 s" in text
    assert (
        "Switchover request: to mail2 (request 20261130T101458Z-0badc0de), not taken up by the operator yet"
    ) in text


def test_a_spec_change_waiting_on_the_primary_is_shown_under_the_nodes() -> None:
    body = mail_cluster()
    node(body, "mail1").update(
        appliedGeneration=4,
        pendingChange=("WaitingForSwitchover: spec.chain.mounts changed: applied once the chain is down"),
    )
    text = screen(body)
    assert (
        "  mail1: spec generation 4 runs here; the newest waits: WaitingForSwitchover: "
        "spec.chain.mounts changed: applied once the chain is down"
    ) in text
    assert "mail2: spec generation" not in text


def test_a_new_cluster_without_reports_lease_or_members_says_what_is_missing() -> None:
    body = mail_cluster()
    body["status"] = {}
    view = status.cluster_view(body, None, {}, {})
    text = status.render(view, NOW)
    assert "not reconciled yet (no Ready condition)" in text
    assert "Lease mail-primary: missing (the operator creates it)" in text
    assert re.search(r"mail1 +online +- +- +never +no report: is its agent running\?", text)
    assert "mail-store: no DRBDVolume of that name in namespace mail" in text
    assert "mail-vips: no FloatingIP of that name in namespace mail" in text
    assert "Last failover: none" in text and "Switchover: none" in text
    assert "none yet: is the operator running?" in text


def test_a_pending_switchover_and_a_resync_are_shown() -> None:
    body = mail_cluster()
    body["status"]["switchover"] = {
        "target": "mail2",
        "fromEpoch": 7,
        "phase": "Pending",
        "reason": "Requested",
        "requestedAt": ago(seconds=4),
        "requestId": "20261130T101456Z-77aa01ff",
    }
    volumes = mail_volumes(replicationState="SyncSource", resyncPercent=42, outOfSyncBytes=3 << 30)
    view = status.cluster_view(body, mail_lease(), volumes, mail_floating_ips())
    text = status.render(view, NOW)
    assert (
        "Switchover: to mail2 from epoch 7, Pending (asked 4s ago, request 20261130T101456Z-77aa01ff): Requested"
    ) in text
    assert re.search(r"mail-store +mail1 +Primary +UpToDate +Connected +SyncSource 42% +3.0 GiB", text)


def test_hostile_text_in_a_report_cannot_forge_lines_or_drive_the_terminal() -> None:
    body = mail_cluster()
    node(body, "mail2").update(
        eligible=False,
        message="ok\n  mail1 online Primary\x1b[2J",
        ineligibleReason="DiskNotUpToDate",
        ineligibleMessage="\x1b]0;owned\x07bad\r\nx",
    )
    text = screen(body)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "  mail2: ok\\n  mail1 online Primary\\x1b[2J\n" in text
    assert "no: DiskNotUpToDate: \\x1b]0;owned\\x07bad\\r\\nx" in text


def test_an_unparsable_node_report_is_left_out_and_an_unparsable_spec_is_named() -> None:
    body = mail_cluster()
    node(body, "mail2")["role"] = "Emperor"
    assert re.search(r"mail2 +online +- +- +never", screen(body))
    body["spec"]["nodes"] = "mail1"
    with pytest.raises(ValueError):
        status.cluster_view(body, None, {}, {})
    assert status.unreadable(body, "spec.nodes: not a list").startswith(
        "HACluster mail in namespace mail: cannot show it, its spec does not parse"
    )


def test_ages_and_sizes_read_like_kubectl() -> None:
    assert [status.ago(NOW - timedelta(seconds=s), NOW) for s in (0, 119, 120, 7199, 7200, 172_800)] == [
        "0s ago",
        "119s ago",
        "2m ago",
        "119m ago",
        "2h ago",
        "2d ago",
    ]
    assert status.ago(NOW + timedelta(seconds=5), NOW) == "0s ago"  # a node's clock ahead
    assert [byte_size(n) for n in (0, 1023, 1024, 5 << 20, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


# --- decisions ------------------------------------------------------------------------------


def typed(body: dict[str, Any] | None = None) -> Any:
    return parse_cluster(body or mail_cluster())


def test_a_fit_standby_may_be_asked_and_the_holder_needs_nothing() -> None:
    assert rules.switchover_problem("mail", typed(), mail_lease(), "mail2", NOW) is None
    done = rules.switchover_problem("mail", typed(), mail_lease(), "mail1", NOW)
    assert done == Outcome(DONE, "mail1 already holds the Lease of mail (epoch 7): nothing to do")


@pytest.mark.parametrize(
    ("change", "code", "said"),
    [
        (lambda b: None, USAGE, "mail3 is not a node of HACluster mail; its spec.nodes: mail1, mail2"),
        (lambda b: b["spec"].update(paused=True), REFUSED, "mail is paused"),
        (lambda b: b["spec"].update(standbyNodes=["mail2"]), REFUSED, "`kubectl tandem online mail2 mail`"),
        (lambda b: b["status"]["nodes"].pop(), REFUSED, "mail2 has not reported for mail"),
        (
            lambda b: node(b, "mail2").update(heartbeatTime=ago(minutes=5)),
            REFUSED,
            "mail2's last report for mail is from 2026-11-30 10:10:00Z",
        ),
        (
            lambda b: node(b, "mail2").update(
                eligible=False, ineligibleReason="LagTooHigh", ineligibleMessage="lag 12 s"
            ),
            REFUSED,
            "mail2 may not take over mail: LagTooHigh: lag 12 s",
        ),
        (lambda b: node(b, "mail2").pop("eligible"), REFUSED, "its agent has not said whether it may"),
        (
            lambda b: b["status"].update(
                switchover={"target": "mail2", "fromEpoch": 7, "phase": "Pending", "requestedAt": ago(seconds=2)}
            ),
            REFUSED,
            "a switchover of mail to mail2 is in progress",
        ),
    ],
)
def test_a_switchover_to_an_unfit_node_is_refused_with_the_fix(change: Any, code: int, said: str) -> None:
    body = mail_cluster()
    change(body)
    target = "mail3" if code == USAGE else "mail2"
    outcome = rules.switchover_problem("mail", typed(body), mail_lease(), target, NOW)
    assert outcome is not None and outcome.code == code and said in outcome.message


def test_a_standby_the_lease_lists_as_synchronous_is_fit_though_its_report_trails() -> None:
    body = mail_cluster()
    node(body, "mail2").update(eligible=False, ineligibleReason="NotSynchronous", ineligibleMessage="not listed yet")
    assert rules.switchover_problem("mail", typed(body), mail_lease(), "mail2", NOW) is None
    unlisted = LeaseRecord("mail1", 7, sync_standbys=())
    assert rules.switchover_problem("mail", typed(body), unlisted, "mail2", NOW) is not None


def test_standby_and_online_edit_the_list_and_keep_one_node_able_to_be_primary() -> None:
    cluster = typed()
    assert rules.standby_nodes_after(cluster, "mail2", standby=True) == ["mail2"]
    assert rules.standby_nodes_after(cluster, "mail2", standby=False) == []
    body = mail_cluster()
    body["spec"]["standbyNodes"] = ["mail2"]
    in_standby = typed(body)
    assert rules.standby_nodes_after(in_standby, "mail2", standby=True) == ["mail2"]
    assert rules.standby_nodes_after(in_standby, "mail2", standby=False) == []
    last = rules.standby_problem("mail", in_standby, "mail1")
    assert last is not None and last.code == REFUSED and "no node of mail able to be primary" in last.message
    assert rules.standby_problem("mail", in_standby, "mail2") is None  # already: nothing lost
    unknown = rules.standby_problem("mail", cluster, "db1")
    assert unknown is not None and unknown.code == USAGE


def test_standby_without_a_cluster_finds_the_clusters_of_the_node() -> None:
    other = mail_cluster()
    other["spec"]["nodes"] = [{"name": "db1"}, {"name": "mail2"}]
    other["spec"]["primary"] = "db1"
    clusters = {"mail": typed(), "db": typed(other)}
    assert rules.clusters_with_node(clusters, "mail2", "mail") == ["db", "mail"]
    assert rules.clusters_with_node(clusters, "mail1", "mail") == ["mail"]
    with pytest.raises(rules.Stop) as stop:
        rules.clusters_with_node(clusters, "web1", "mail")
    assert stop.value.outcome == Outcome(
        USAGE, "no HACluster in namespace mail lists node web1 in spec.nodes; its HAClusters: db, mail"
    )


def switched(phase: str, request: str = "r-2", primary: str = "mail1", **extra: Any) -> Any:
    body = mail_cluster()
    body["status"]["primary"] = primary
    body["status"]["switchover"] = {
        "target": "mail2",
        "fromEpoch": 7,
        "phase": phase,
        "requestedAt": ago(seconds=3),
        "requestId": request,
        **extra,
    }
    return typed(body)


def test_the_wait_ends_on_this_request_only() -> None:
    assert rules.switchover_result("mail", typed(), "r-2", "mail2") is None  # an older request
    assert rules.switchover_result("mail", switched("Pending"), "r-2", "mail2") is None
    assert rules.switchover_result("mail", switched("Completed"), "r-2", "mail2") is None  # not yet
    done = rules.switchover_result("mail", switched("Completed", primary="mail2"), "r-2", "mail2")
    assert done == Outcome(DONE, "mail2 is the primary of mail (epoch 7)")
    refused = rules.switchover_result(
        "mail", switched("Refused", reason="TargetLagging", message="mail2: PostgreSQL lag is 3 s"), "r-2", "mail2"
    )
    assert refused == Outcome(
        REFUSED, "the operator refused the switchover of mail to mail2: TargetLagging: mail2: PostgreSQL lag is 3 s"
    )


def test_a_timed_out_wait_says_whether_the_operator_took_the_request_up() -> None:
    idle = rules.wait_timed_out("mail", typed(), "r-2", 30)
    assert idle.code == TIMED_OUT and "has not taken request r-2 up (is it running?)" in idle.message
    busy = rules.wait_timed_out("mail", switched("Pending", reason="Requested", message="mail1 is demoting"), "r-2", 30)
    assert busy.code == TIMED_OUT and "is Pending (Requested: mail1 is demoting)" in busy.message


def test_request_ids_are_fresh_and_fit_the_status_field() -> None:
    first, second = rules.new_request_id(), rules.new_request_id()
    assert first != second and len(first) <= 63
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", first)


# --- errors ---------------------------------------------------------------------------------


def api_error(code: int, message: str = "", reason: str = "") -> KubeError:
    """The typed error the PluginApi raises for the server's answer."""
    exc = ApiException(status=code, reason=reason or "Error")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return kube_error(exc)


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (api_error(401), UNREACHABLE, "rejected the kubeconfig's credentials"),
        (
            api_error(403, 'haclusters.tandem.dev "mail" is forbidden: User "ann" cannot patch resource "haclusters"'),
            UNREACHABLE,
            'forbidden: haclusters.tandem.dev "mail" is forbidden',
        ),
        (api_error(404, "the server could not find the requested resource"), UNREACHABLE, "install tandem's CRDs"),
        (
            api_error(422, "spec.standbyNodes must leave at least one node able to be primary"),
            REFUSED,
            "refused the change (422): spec.standbyNodes must leave",
        ),
        (api_error(500, "etcdserver: request timed out"), UNREACHABLE, "answered 500 Error: etcdserver"),
    ],
)
def test_api_errors_become_one_line_with_the_fix(error: KubeError, code: int, said: str) -> None:
    outcome = client.api_failure(error, "https://198.18.0.1:6443")
    assert outcome.code == code and said in outcome.message and "\n" not in outcome.message


# --- the commands, over a fake API ----------------------------------------------------------


class FakeApi:
    """The PluginApi's calls over objects in memory; `conflicts` 409s the next guarded patches."""

    server = "https://198.18.0.1:6443"

    def __init__(self, *bodies: dict[str, Any], conflicts: int = 0) -> None:
        self.objects = {b["metadata"]["name"]: b for b in bodies}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.conflicts = conflicts
        self.after_patch: Any = None

    def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(name))

    def clusters(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.objects[n]) for n in sorted(self.objects)]

    def volumes(self, namespace: str) -> dict[str, DRBDVolume]:
        return mail_volumes()

    def floating_ips(self, namespace: str) -> dict[str, FloatingIP]:
        return mail_floating_ips()

    def lease(self, namespace: str, cluster: str) -> LeaseRecord | None:
        return mail_lease()

    def patch_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        if "resourceVersion" in patch.get("metadata", {}) and self.conflicts:
            self.conflicts -= 1
            raise api_error(409, "the object has been modified")
        self.patches.append((name, patch))
        if self.after_patch:
            self.after_patch(self.objects[name], patch)


@pytest.fixture(autouse=True)
def _reports_are_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands measure the reports' ages at the objects' time, not today's."""
    monkeypatch.setattr(command, "now", lambda: NOW)


def run(argv: list[str], api: FakeApi | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    def connect(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
        assert api is not None, "no API call expected"
        return api, "mail"

    try:
        code = command.main(argv, connect=connect)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["switchover", "mail", "--to", "mail2\n--to mail1"],
        ["switchover", "mail", "--to", "mail 2"],
        ["standby", "mail1; kubectl delete hac mail"],
        ["online", "MAIL1"],
        ["pause", "mail/../db"],
        ["status", "-n", "kube system"],
        ["switchover", "mail", "--to", "mail2", "--wait", "--timeout", "-1"],
        ["switchover", "mail"],
        ["frobnicate"],
    ],
)
def test_malformed_input_is_refused_on_one_line_before_any_api_call(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, None, capsys)
    assert code == USAGE and out == ""
    assert err.count("\n") == 1 and err.startswith("kubectl tandem")


def test_the_connection_options_go_before_or_after_the_command() -> None:
    before = command.build_parser().parse_args(["--kubeconfig", "k", "--context", "c", "-n", "db", "status"])
    after = command.build_parser().parse_args(["status", "--kubeconfig", "k", "--context", "c", "-n", "db"])
    neither = command.build_parser().parse_args(["status"])
    for args in (before, after):
        assert (args.kubeconfig, args.context, args.namespace) == ("k", "c", "db")
    assert (neither.kubeconfig, neither.context, neither.namespace) == (None, None, None)


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("status", "switchover", "standby", "online", "pause", "resume", "cleanup"):
        code, out, _ = run([name, "--help"], None, capsys)
        assert code == DONE and f"usage: kubectl tandem {name}" in out and "exit codes:" in out


def test_status_prints_the_screen_and_an_unknown_cluster_lists_the_known(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(mail_cluster())
    code, out, _ = run(["status", "mail"], api, capsys)
    assert code == DONE and out.startswith("HACluster mail in namespace mail:")
    code, out, err = run(["status", "mial"], api, capsys)
    assert code == USAGE and out == ""
    assert err == (
        "kubectl tandem: no HACluster 'mial' in namespace mail; its HAClusters: mail "
        "(or pick another namespace with -n)\n"
    )
    assert run(["status", "mail", "-A"], api, capsys)[0] == USAGE


def test_switchover_sets_both_annotations_in_one_patch(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(mail_cluster())
    code, out, _ = run(["switchover", "mail", "--to", "mail2"], api, capsys)
    assert code == DONE and "asked the operator to move mail's primary to mail2" in out
    [(name, patch)] = api.patches
    annotations = patch["metadata"]["annotations"]
    assert name == "mail" and set(patch) == {"metadata"}
    assert annotations[SWITCHOVER_ANNOTATION] == "mail2"
    assert annotations[SWITCHOVER_ID_ANNOTATION] in out


def test_switchover_to_the_holder_or_an_unfit_node_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(mail_cluster())
    code, out, _ = run(["switchover", "mail", "--to", "mail1"], api, capsys)
    assert code == DONE and "already holds the Lease" in out
    code, _, err = run(["switchover", "mail", "--to", "mail3"], api, capsys)
    assert code == USAGE and "its spec.nodes: mail1, mail2" in err
    body = mail_cluster()
    node(body, "mail2").update(eligible=False, ineligibleReason="DiskNotUpToDate", ineligibleMessage="Inconsistent")
    code, _, err = run(["switchover", "mail", "--to", "mail2"], FakeApi(body), capsys)
    assert code == REFUSED and err == ("kubectl tandem: mail2 may not take over mail: DiskNotUpToDate: Inconsistent\n")
    assert api.patches == []


def test_switchover_wait_ends_when_the_operator_completes_or_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    def complete(body: dict[str, Any], patch: dict[str, Any]) -> None:
        request = patch["metadata"]["annotations"][SWITCHOVER_ID_ANNOTATION]
        body["status"].update(
            primary="mail2",
            epoch=8,
            switchover={
                "target": "mail2",
                "fromEpoch": 7,
                "phase": "Completed",
                "requestedAt": ago(seconds=2),
                "requestId": request,
            },
        )

    api = FakeApi(mail_cluster())
    api.after_patch = complete
    code, out, _ = run(["switchover", "mail", "--to", "mail2", "--wait"], api, capsys)
    assert code == DONE and out.splitlines()[-1] == "mail2 is the primary of mail (epoch 8)"

    def refuse(body: dict[str, Any], patch: dict[str, Any]) -> None:
        complete(body, patch)
        body["status"]["primary"] = "mail1"
        body["status"]["switchover"].update(phase="Refused", reason="TargetLagging", message="lag 3 s")

    api = FakeApi(mail_cluster())
    api.after_patch = refuse
    code, _, err = run(["switchover", "mail", "--to", "mail2", "--wait"], api, capsys)
    assert code == REFUSED and "TargetLagging: lag 3 s" in err


def test_switchover_wait_times_out_when_nobody_acts(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        ["switchover", "mail", "--to", "mail2", "--wait", "--timeout", "0.05"], FakeApi(mail_cluster()), capsys
    )
    assert code == TIMED_OUT and "has not taken request" in err
    code, _, err = run(["switchover", "mail", "--to", "mail2", "--timeout", "5"], FakeApi(mail_cluster()), capsys)
    assert code == USAGE and "--timeout only applies with --wait" in err


def test_standby_patches_the_list_guarded_by_resource_version_and_retries_a_conflict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi(mail_cluster(), conflicts=2)
    code, out, _ = run(["standby", "mail1"], api, capsys)
    assert code == DONE
    assert out == (
        "mail1 is in standby in mail: it is the primary, so it tears down and releases the Lease for another node\n"
    )
    assert api.patches == [("mail", {"metadata": {"resourceVersion": "48213"}, "spec": {"standbyNodes": ["mail1"]}})]
    body = mail_cluster()
    body["spec"]["standbyNodes"] = ["mail1"]
    api = FakeApi(body)
    code, out, _ = run(["online", "mail1", "mail"], api, capsys)
    assert code == DONE and "mail1 is online in mail" in out
    assert api.patches[0][1]["spec"] == {"standbyNodes": []}
    code, out, _ = run(["online", "mail1", "mail"], FakeApi(mail_cluster()), capsys)
    assert code == DONE and out == "mail1 is already online in mail\n"


def test_standby_gives_up_when_the_object_keeps_changing(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(mail_cluster(), conflicts=command.CONFLICT_RETRIES)
    code, _, err = run(["standby", "mail2", "mail"], api, capsys)
    assert code == REFUSED and "kept changing" in err and api.patches == []


def test_standby_of_a_node_in_no_cluster_says_which_clusters_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["standby", "web1"], FakeApi(mail_cluster()), capsys)
    assert code == USAGE and "no HACluster in namespace mail lists node web1" in err


def test_pause_resume_and_cleanup_write_one_field_each(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(mail_cluster())
    assert run(["pause", "mail"], api, capsys)[0] == DONE
    assert run(["resume", "mail"], api, capsys)[1] == "mail is already running (not paused)\n"
    assert run(["cleanup", "mail"], api, capsys)[0] == DONE
    assert [p for _, p in api.patches][0] == {"spec": {"paused": True}}
    cleanup = api.patches[1][1]["metadata"]["annotations"][CLEANUP_ANNOTATION]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", cleanup)


def test_connection_failures_exit_4_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    class Down(FakeApi):
        def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
            raise kube_error(urllib3.exceptions.MaxRetryError(None, "/apis", "Connection refused"))

    code, _, err = run(["pause", "mail"], Down(), capsys)
    assert (
        code == UNREACHABLE
        and err.startswith("kubectl tandem: cannot reach the API server https://198.18.0.1:6443")
        and err.count("\n") == 1
    )


# --- the kubeconfig -------------------------------------------------------------------------


def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "lab",
                "clusters": [{"name": "lab", "cluster": {"server": "https://198.18.0.1:6443"}}],
                "users": [{"name": "ann", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "lab", "context": {"cluster": "lab", "user": "ann", "namespace": "mail"}},
                    {"name": "bare", "context": {"cluster": "lab", "user": "ann"}},
                ],
            }
        )
    )
    return path


def test_the_context_gives_the_server_and_the_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kubeconfig(tmp_path)
    api, namespace = client.connect(str(path), None)
    assert (api.server, namespace) == ("https://198.18.0.1:6443", "mail")
    assert client.connect(str(path), "bare")[1] == "default"
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    assert client.connect(None, None)[1] == "mail"


def test_an_unknown_context_or_a_missing_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(rules.Stop) as stop:
        client.connect(str(kubeconfig(tmp_path)), "prod")
    assert stop.value.outcome == Outcome(USAGE, f"no context 'prod' in {tmp_path / 'config'}; its contexts: lab, bare")
    with pytest.raises(rules.Stop) as stop:
        client.connect(str(tmp_path / "nothing"), None)
    assert stop.value.outcome.code == USAGE and "pass --kubeconfig FILE or set KUBECONFIG" in stop.value.outcome.message
