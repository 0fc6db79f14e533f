"""The one Kubernetes access layer of the agent, the operator, the plugin and the lab: the
client factory (`connect`), typed API errors (`errors`) and the `<cluster>-primary` Lease as
a typed record (`lease`)."""
