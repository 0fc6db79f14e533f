"""`tandem import`: turn a Pacemaker/Corosync/DRBD configuration into tandem manifests.

Parsers (`crm`, `cib`, `drbd`) read text into the plain model of `model`; `mapping` turns that
model into manifests and a report without touching files; `check` validates the manifests;
`command` does the file work (read, write atomically, print).
"""
