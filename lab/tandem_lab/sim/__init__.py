"""A deterministic simulation of the failover protocol (issue 16, point 4).

It lives in `lab/tandem_lab/sim/`, beside the agent rather than inside it, because it needs only the
agent's pure core (`tandem_agent.core`), which it imports unchanged: the decisions simulated
are the real ones. The agent's executor (`tandem_agent.agent`, threads, drivers, the
Kubernetes client) is not imported; `tandem_lab.sim.agent` is a model of it. Run
`python -m tandem_lab.sim --seeds 10000`, or `--seed N --trace` to replay one seed.

Variants: `agent-as-is` is agent.py as it is; `proposed` (the default) adds the three fixes
the simulation showed to be needed (docs/failover-protocol.md, Simulation); `eager-takeover`
and `ignore-sync-list` are broken on purpose, to show that the checker can fail.
"""

from tandem_lab.sim.engine import Violation
from tandem_lab.sim.world import VARIANTS, Fault, Outcome, simulate

__all__ = ["VARIANTS", "Fault", "Outcome", "Violation", "simulate"]
