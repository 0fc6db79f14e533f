"""The one-time initial sync of a DRBD volume, run on each lab node as an administrator runs
it when creating a resource: `prepare` on every member (write the resource file, create the
meta data, bring the resource up), then `sync` on the node that starts as the source
(`primary --force`, wait for the full sync, back to Secondary).

    /opt/tandem/bin/python -m tandem_lab.drbdsim.bootstrap prepare --node mail1 < volume.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem_agent.drivers.drbd import Drbd
from tandem_lab.drbdsim import control

STATE_DIR = Path("/var/lib/tandem-lab/drbd")
CONFIG_DIR = Path("/etc/drbd.d")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("step", choices=["prepare", "sync"])
    p.add_argument("--node", required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    spec = DRBDVolumeSpec.model_validate(json.load(sys.stdin))
    drbd = Drbd(
        CONFIG_DIR,
        node_name=args.node,
        drbdsetup=control.DRBDSETUP,
        drbdmeta=control.DRBDMETA,
        env=control.lab_env(STATE_DIR),
    )
    if args.step == "prepare":
        drbd.apply_config(spec)
        drbd.create_md(spec.resource_name)
        drbd.up(spec.resource_name)
        return 0
    drbd.primary(spec.resource_name, force=True)
    deadline = time.monotonic() + args.timeout
    while True:
        status = drbd.status(spec.resource_name)
        peers = status.data_peers if status else ()
        if peers and all(peer.disk_state == "UpToDate" for peer in peers):
            break
        if time.monotonic() > deadline:
            print(f"initial sync of {spec.resource_name} did not finish", file=sys.stderr)
            return 1
        time.sleep(0.1)
    drbd.secondary(spec.resource_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
