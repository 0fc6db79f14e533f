"""tandem's operator: validates, sets intent (Lease, switchover requests) and reports.

`python -m tandem_operator` runs it (see `__main__.py`); `core` is the pure decision logic,
`handlers` the thin kopf handlers and `kube` the small I/O layer. See docs/operator.md.
"""
