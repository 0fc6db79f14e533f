"""A stand-in for the DRBD 9 kernel module, for the lab only.

The real `drbdadm` (Debian's drbd-utils) parses the resource files and calls `drbdsetup` and
`drbdmeta`; tandem-lab's console scripts `tandem-lab-drbdsetup` and `tandem-lab-drbdmeta`
(`cli.py`, installed in the venv's bin/: `control.DRBDSETUP`, `control.DRBDMETA`) replace those
two (pass them with `drbdadm --drbdsetup=... --drbdmeta=...`). They forward their argument
list to a per-node "kernel" daemon (`kernel.py`) over a Unix socket in the node's state
directory (`$DRBDSIM_STATE_DIR`). The daemons of the nodes of a resource talk to each other
over TCP on the replication addresses of the resource, so cutting the lab's replication link
disconnects them as it would disconnect DRBD.

- `model.py`: the pure state machine (roles, disk/connection/replication states, generation
  identifiers, handshake and split-brain decisions, quorum, refusals, `status --json`).
- `kernel.py`: the daemon (sockets, timers, persistence).
- `control.py`: start/stop a daemon, lab-only writes and data digests (used by the lab and
  tests); `cli.py`: the command-line entry points.
- `io.py`: the block I/O protocol between a node's device and its daemon; `blockdev.py`: the
  device, a FUSE file per DRBD device (served by the daemon) under a loop device.

See docs/drbd-standin.md for what is modelled and which DRBD documentation each part follows.
"""
