#!/usr/bin/env bash
# The quick-start demo (make demo): the lab with the mail sample, shown with kubectl, then a
# failover narrated as it happens. Leaves the lab running; make demo-down stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/${VENV:-.venv}/bin:$PATH"
exec tandem lab demo
