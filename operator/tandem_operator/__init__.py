"""tandem's operator: validates, sets intent (Lease, switchover requests) and reports.

`python -m tandem_operator` runs it (see `__main__.py`); `core.reconcile` is the pure decision,
made of the rules in the package's other pure modules, one concern each (`switchover`,
`conditions`, `split_brain`, ...); `handlers` are the thin kopf handlers and `kube` the small
I/O layer. See docs/operator.md.
"""
