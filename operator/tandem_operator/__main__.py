"""Entry point: `python -m tandem_operator [--kubeconfig PATH] [--namespace NS | --all-namespaces]`."""

from __future__ import annotations

import argparse
import logging
import sys

from tandem.metrics_server import address_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tandem_operator",
        description="tandem operator: keeps each HACluster's Lease, turns spec.primary changes into "
        "planned switchovers and reports conditions and Events.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch only this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--teardown-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a deleted HACluster waits for its agents to tear down and "
        "release the Lease before the operator deletes it anyway (default 60)",
    )
    parser.add_argument(
        "--peering", metavar="NAME", help="use kopf peering NAME (needs kopf's peering CRDs); default: standalone"
    )
    parser.add_argument(
        "--metrics-address",
        type=address_argument,
        default=":9465",
        metavar="HOST:PORT",
        help="serve /metrics and /healthz here (default :9465, every IPv4 address; [::]:9465 for IPv6; empty: off)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log kopf's own activity too")
    return parser.parse_args(argv)


class ExpectedWaits(logging.Filter):
    """kopf logs a handler that asks to be retried as an ERROR; for the operator's own waits
    (a deletion waiting for the agents, a spec.primary change queued behind a switchover)
    that is the normal path, so those lines are logged at INFO instead."""

    WAITS = ("Handler 'teardown' failed temporarily: ", "Handler 'primary/spec.primary' failed temporarily: ")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for prefix in self.WAITS:
            if message.startswith(prefix):
                record.msg, record.args = "waiting: " + message[len(prefix) :], ()
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    import kopf

    from tandem_operator import handlers, metrics

    # kopf says "Timer 'reconcile' succeeded." for every tick: keep its per-object chatter out
    # unless asked for; warnings and errors still show.
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(ExpectedWaits())
    handlers.RUNTIME.kubeconfig = args.kubeconfig
    handlers.RUNTIME.teardown_timeout = args.teardown_timeout
    settings = kopf.OperatorSettings()
    handlers.apply_settings(settings)
    logging.getLogger("tandem_operator").info(
        "starting: %s, %s",
        "namespaces " + ", ".join(args.namespace) if args.namespace else "all namespaces",
        f"peering {args.peering}" if args.peering else "standalone",
    )
    server = metrics.start(args.metrics_address)
    try:
        kopf.run(
            settings=settings,
            standalone=args.peering is None,
            peering_name=args.peering,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
        )
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
