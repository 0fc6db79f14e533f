"""`kubectl tandem`: Pacemaker's crm_mon and crm commands for HAClusters, as a kubectl plugin.

`rules` holds the decisions (pure functions of the objects as read), `status` the crm_mon-like
rendering (objects in, text out), `client` the kubeconfig and the few API calls, `command` the
argument parsing and the thin executor that joins them. docs/kubectl-plugin.md is the manual.
"""
