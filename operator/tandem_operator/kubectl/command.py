"""The `kubectl-tandem` executable: argument parsing and a thin executor over `client`.

Every decision is in `rules` and the screen in `status`; this module only reads, asks them,
writes and prints. Names are checked while the arguments are parsed, so a malformed one is
refused before any API call.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import ValidationError

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    CLEANUP_ANNOTATION,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
    SWITCHOVER_ANNOTATION,
    SWITCHOVER_ID_ANNOTATION,
)
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster
from tandem.kube.errors import Conflict, KubeError
from tandem_operator.kube import parse_cluster
from tandem_operator.kubectl import client, rules
from tandem_operator.kubectl.rules import DONE, REFUSED, USAGE, Outcome, Stop
from tandem_operator.kubectl.status import clean, cluster_view, render, unreadable

PROG = "kubectl tandem"
WAIT_SECONDS = 120.0
POLL_SECONDS = 1.0
CONFLICT_RETRIES = 5
EXIT_CODES = """exit codes:
  0  done (or nothing to do)
  1  refused by tandem: the target is not fit, the operator or an agent refused the
     switchover or forced failover, failover without --accept-data-loss (nothing changed),
     or the API server's rules refused the change
  2  bad input: unknown cluster, node or context, a malformed name, wrong usage (failover
     without --force)
  3  timed out (--wait)
  4  the API server is unreachable, rejects the credentials, forbids the call, or does not
     serve tandem's CRDs"""

Connect = Callable[[str | None, str | None], tuple[client.PluginApi, str]]


def now() -> datetime:
    """The time the reports' ages are measured against (a function, so tests can fix it)."""
    return datetime.now(UTC)


# --- the commands ---------------------------------------------------------------------------


def _read(api: client.PluginApi, namespace: str, name: str) -> dict[str, Any]:
    body = api.cluster(namespace, name)
    if body is None:
        known = [c["metadata"]["name"] for c in api.clusters(namespace)]
        raise Stop(rules.unknown_cluster(name, namespace, known))
    return body


def _typed(name: str, body: dict[str, Any]) -> HACluster:
    try:
        return parse_cluster(body)
    except ValidationError as exc:
        raise Stop(
            Outcome(
                REFUSED, f"HACluster {name}'s spec does not parse: {_first(exc)}; see `kubectl get hac {name} -o yaml`"
            )
        ) from exc


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


def run_status(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    if args.cluster and args.all_namespaces:
        return Outcome(USAGE, "name a cluster or ask for all namespaces (-A), not both")
    if args.cluster:
        bodies = [_read(api, namespace, args.cluster)]
    else:
        bodies = api.clusters(None if args.all_namespaces else namespace)
        if not bodies:
            where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
            return Outcome(DONE, f"no HAClusters in {where}")
    shown_at = now()
    members: dict[str, tuple[dict[str, DRBDVolume], dict[str, FloatingIP]]] = {}
    screens = []
    for body in bodies:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if ns not in members:
            members[ns] = (api.volumes(ns), api.floating_ips(ns))
        try:
            view = cluster_view(body, api.lease(ns, name), *members[ns])
        except ValidationError as exc:
            screens.append(unreadable(body, _first(exc)))
            continue
        screens.append(render(view, shown_at))
    print("\n".join(screens), end="")
    return Outcome(DONE, "")


def run_switchover(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    name, node = args.cluster, args.to
    if args.timeout is not None and not args.wait:
        return Outcome(USAGE, "--timeout only applies with --wait")
    cluster = _typed(name, _read(api, namespace, name))
    problem = rules.switchover_problem(name, cluster, api.lease(namespace, name), node, now())
    if problem is not None:
        return problem
    request = rules.new_request_id()
    api.patch_cluster(
        namespace, name, {"metadata": {"annotations": {SWITCHOVER_ANNOTATION: node, SWITCHOVER_ID_ANNOTATION: request}}}
    )
    asked = f"asked the operator to move {name}'s primary to {node} (request {request})"
    if not args.wait:
        return Outcome(DONE, f"{asked}; follow it with `kubectl tandem status {name}`")
    print(asked, flush=True)
    return _wait(
        api,
        namespace,
        name,
        args.timeout,
        result=lambda c: rules.switchover_result(name, c, request, node),
        timed_out=lambda c, seconds: rules.wait_timed_out(name, c, request, seconds),
    )


def _wait(
    api: client.PluginApi,
    namespace: str,
    name: str,
    timeout: float | None,
    *,
    result: Callable[[HACluster], Outcome | None],
    timed_out: Callable[[HACluster, float], Outcome],
) -> Outcome:
    """Read the HACluster every POLL_SECONDS until `result` says how the request ended."""
    seconds = WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + seconds
    while True:
        cluster = _typed(name, _read(api, namespace, name))
        found = result(cluster)
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return timed_out(cluster, seconds)
        time.sleep(min(POLL_SECONDS, left))


def run_failover(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    """Print what forcing NODE may lose; only with --accept-data-loss ask for it."""
    name, node = args.cluster, args.to
    if not args.force:
        return Outcome(
            USAGE,
            "failover only forces a node that no rule lets take over: add "
            "--force (an eligible standby takes over by itself; to move a running "
            f"primary use `{PROG} switchover {name} --to {node}`)",
        )
    if args.timeout is not None and not args.wait:
        return Outcome(USAGE, "--timeout only applies with --wait")
    cluster = _typed(name, _read(api, namespace, name))
    lease = api.lease(namespace, name)
    problem = rules.failover_problem(name, cluster, lease, node)
    if problem is not None:
        return problem
    for line in rules.loss_screen(name, cluster, lease, node, now()):
        print(clean(line))
    if not args.accept_data_loss:
        return Outcome(
            REFUSED, f"nothing changed: to force {node} and lose what is listed above, add --accept-data-loss"
        )
    request = rules.new_request_id()
    api.patch_cluster(
        namespace,
        name,
        {
            "metadata": {
                "annotations": {
                    FORCE_FAILOVER_ANNOTATION: node,
                    FORCE_FAILOVER_ID_ANNOTATION: request,
                    ACCEPT_DATA_LOSS_ANNOTATION: "true",
                }
            }
        },
    )
    asked = f"asked for a forced failover of {name} to {node}, data loss accepted (request {request})"
    if not args.wait:
        return Outcome(DONE, f"{asked}; follow it with `kubectl tandem status {name}`")
    print(asked, flush=True)
    return _wait(
        api,
        namespace,
        name,
        args.timeout,
        result=lambda c: rules.failover_result(name, c, request, node),
        timed_out=lambda c, seconds: rules.failover_timed_out(name, c, request, seconds),
    )


def _set_standby(api: client.PluginApi, namespace: str, name: str, node: str, standby: bool) -> Outcome:
    """Add or remove `node` in spec.standbyNodes: the list computed from a fresh read, written
    only if the object has not changed since (its resourceVersion), read again if it has."""
    for _ in range(CONFLICT_RETRIES):
        body = _read(api, namespace, name)
        cluster = _typed(name, body)
        problem = rules.standby_problem(name, cluster, node) if standby else rules.node_problem(name, cluster, node)
        if problem is not None:
            return problem
        wanted = rules.standby_nodes_after(cluster, node, standby)
        if wanted == list(cluster.spec.standby_nodes):
            return Outcome(DONE, f"{node} is already {'in standby' if standby else 'online'} in {name}")
        try:
            api.patch_cluster(
                namespace,
                name,
                {
                    "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                    "spec": {"standbyNodes": wanted},
                },
            )
        except Conflict:
            continue
        if not standby:
            return Outcome(
                DONE, f"{node} is online in {name}: it may take the Lease again (no failover back unless asked)"
            )
        holds = cluster.status is not None and cluster.status.primary == node
        return Outcome(
            DONE,
            f"{node} is in standby in {name}"
            + (
                ": it is the primary, so it tears down and releases the Lease for another node"
                if holds
                else ": it will not take the Lease"
            ),
        )
    return Outcome(
        REFUSED,
        f"HACluster {name} kept changing while {node} was being set {'in standby' if standby else 'online'}: try again",
    )


def run_standby(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    standby = args.command == "standby"
    if args.cluster:
        names = [args.cluster]
    else:
        clusters = {c["metadata"]["name"]: _typed(c["metadata"]["name"], c) for c in api.clusters(namespace)}
        names = rules.clusters_with_node(clusters, args.node, namespace)
    outcomes = [_set_standby(api, namespace, name, args.node, standby) for name in names]
    for outcome in outcomes:
        say(outcome)
    return Outcome(max(o.code for o in outcomes), "")


def run_pause(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    name, paused = args.cluster, args.command == "pause"
    cluster = _typed(name, _read(api, namespace, name))
    if cluster.spec.paused == paused:
        return Outcome(DONE, f"{name} is already {'paused' if paused else 'running (not paused)'}")
    api.patch_cluster(namespace, name, {"spec": {"paused": paused}})
    if paused:
        return Outcome(
            DONE,
            f"{name} is paused: the agents neither bring up, tear down, repair "
            f"nor fail over anything of it until `kubectl tandem resume {name}`",
        )
    return Outcome(DONE, f"{name} resumed: the agents adopt what runs and act on it again")


def run_cleanup(api: client.PluginApi, namespace: str, args: argparse.Namespace) -> Outcome:
    name = args.cluster
    _read(api, namespace, name)
    request = rules.new_request_id()
    api.patch_cluster(namespace, name, {"metadata": {"annotations": {CLEANUP_ANNOTATION: request}}})
    return Outcome(DONE, f"asked the agents of {name} to forget its failures and restart back-off (cleanup {request})")


# --- arguments ------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line of stderr and exit code 2 (USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {clean(message)} (see `{self.prog} --help`)\n")


def _name(pattern: str, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > 63 or not re.fullmatch(pattern, value):
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
        return value

    check.__name__ = what  # argparse names the type in its messages
    return check


cluster_name = _name(DNS_LABEL, "an HACluster name (a lower-case DNS label)")
node_name = _name(DNS_SUBDOMAIN, "a node name (a lower-case DNS name of at most 63 characters)")
namespace_name = _name(DNS_LABEL, "a namespace name (a lower-case DNS label)")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds between 0 and 86400")
    return seconds


def _connection_options(parser: Parser, default: Any) -> None:
    """--kubeconfig, --context and -n, before the command (default None) and after it
    (SUPPRESS: a command's parser keeps what was given before it), as kubectl takes them."""
    parser.add_argument(
        "--kubeconfig",
        default=default,
        metavar="FILE",
        help="kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="kubeconfig context (default: its current context)")
    parser.add_argument(
        "-n",
        "--namespace",
        type=namespace_name,
        default=default,
        help="namespace of the HAClusters (default: the context's, else default)",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pacemaker's crm_mon and crm commands for tandem's HAClusters (docs/kubectl-plugin.md).",
    )
    _connection_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[..., Outcome], summary: str, example: str) -> Parser:
        found: Parser = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _connection_options(found, argparse.SUPPRESS)
        found.set_defaults(run=run)
        return found

    status = command(
        "status",
        run_status,
        "show HAClusters like crm_mon -1: nodes, Lease, "
        "resources, PostgreSQL, DRBD, floating IPs, failovers, conditions",
        "kubectl tandem status mail -n mail",
    )
    status.add_argument(
        "cluster",
        nargs="?",
        type=cluster_name,
        metavar="CLUSTER",
        help="one HACluster (default: every HACluster of the namespace)",
    )
    status.add_argument("-A", "--all-namespaces", action="store_true", help="every HACluster of every namespace")

    switchover = command(
        "switchover",
        run_switchover,
        "move the primary to NODE (a planned switchover, like crm resource move)",
        "kubectl tandem switchover mail --to mail2 --wait",
    )
    switchover.add_argument("cluster", type=cluster_name, metavar="CLUSTER", help="the HACluster")
    switchover.add_argument("--to", required=True, type=node_name, metavar="NODE", help="the node to become primary")
    switchover.add_argument("--wait", action="store_true", help="wait until NODE is primary, or the operator refuses")
    switchover.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --wait: give up after this long (default {WAIT_SECONDS:g})",
    )

    failover = command(
        "failover",
        run_failover,
        "force NODE to be primary when no standby "
        "may take over by itself (the primary is gone and NODE may lack data): "
        "prints what may be lost; acts only with --accept-data-loss",
        "kubectl tandem failover mail --to mail2 --force --accept-data-loss --wait",
    )
    failover.add_argument("cluster", type=cluster_name, metavar="CLUSTER", help="the HACluster")
    failover.add_argument("--to", required=True, type=node_name, metavar="NODE", help="the node to become primary")
    failover.add_argument(
        "--force", action="store_true", help="required: override the rules that protect acknowledged writes"
    )
    failover.add_argument(
        "--accept-data-loss", action="store_true", help="write the request; without it nothing changes"
    )
    failover.add_argument("--wait", action="store_true", help="wait until the request is Completed or Refused")
    failover.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --wait: give up after this long (default {WAIT_SECONDS:g})",
    )

    for name, summary, example in (
        (
            "standby",
            "put NODE in standby (spec.standbyNodes), like crm node standby: it never "
            "takes the Lease, and gives it up if it holds it",
            "kubectl tandem standby mail1",
        ),
        ("online", "take NODE out of standby, like crm node online", "kubectl tandem online mail1"),
    ):
        node = command(name, run_standby, summary, example)
        node.add_argument("node", type=node_name, metavar="NODE", help="a node of spec.nodes")
        node.add_argument(
            "cluster",
            nargs="?",
            type=cluster_name,
            metavar="CLUSTER",
            help="one HACluster (default: every HACluster of the namespace that lists NODE in spec.nodes)",
        )

    for name, summary in (
        (
            "pause",
            "maintenance mode (spec.paused): the agents leave the cluster's resources "
            "as they are, like crm configure property maintenance-mode=true",
        ),
        ("resume", "end maintenance mode: the agents adopt what runs and act again"),
        ("cleanup", "make the agents forget the cluster's failures and restart back-off, like crm resource cleanup"),
    ):
        run = run_cleanup if name == "cleanup" else run_pause
        command(name, run, summary, f"kubectl tandem {name} mail").add_argument(
            "cluster", type=cluster_name, metavar="CLUSTER", help="the HACluster"
        )
    return parser


# --- running --------------------------------------------------------------------------------


def say(outcome: Outcome) -> None:
    """An outcome's message on one line: on stdout when done, else on stderr."""
    if not outcome.message:
        return
    if outcome.code == DONE:
        print(clean(outcome.message))
    else:
        print(f"{PROG}: {clean(outcome.message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, connect: Connect = client.connect) -> int:
    args = build_parser().parse_args(argv)
    api: client.PluginApi | None = None
    try:
        api, default_namespace = connect(args.kubeconfig, args.context)
        outcome: Outcome = args.run(api, args.namespace or default_namespace, args)
    except Stop as stop:
        outcome = stop.outcome
    except KubeError as error:
        outcome = client.api_failure(error, api.server if api else "the API server")
    say(outcome)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
