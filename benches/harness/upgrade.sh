#!/usr/bin/env bash
# upgrade.sh -- binary upgrades under wrk load: swapvisor (`swapvisor upgrade`) and nginx
# (USR2 + WINCH + QUIT, its documented binary upgrade), one after the other in one sitting.
#
# Usage (from the repository root):
#   cargo build --release -p swapvisor-cli
#   benches/harness/upgrade.sh > /tmp/results-upgrade.txt     # ~2.5 min with the defaults
#   DURATION=10 UPGRADES=4 CONNS=16 benches/harness/upgrade.sh   # a quick check
#
# Needs: bash, python3 (standard library only), wrk, nginx (apt-get install -y nginx wrk).
# Everything listens on and talks to 127.0.0.1 only, on free ports, in a temp dir
# /tmp/upgradebench.XXXXXX; every process is started by the harness and stopped by it.
#
# Two "builds" of each server answer GET /hello with {"build":"a"} or {"build":"b"}:
#   swapvisor  the release binary behind two scripts that export BUILD=a or b and exec it; the
#              config answers "${BUILD}". An upgrade: POST /api/v1/admin/upgrade with the other
#              script as {"binary": ...}, which answers once the new process serves.
#   nginx      the same binary (daemonized: it ignores USR2 while its starter is its parent); the config file is rewritten to the other build just before
#              the upgrade: kill -USR2 <master> (a new master and workers on the same sockets),
#              wait for the new master's pid file, kill -WINCH <old master> (its workers finish
#              gracefully), kill -QUIT <old master>; nginx's documented sequence.
# Per server and per connection count in CONNS: wrk -t$THREADS -c$CONNS -d${DURATION}s runs
# while UPGRADES upgrades alternate the builds, evenly spread from 2 s in. After each one a probe
# on fresh connections reads /hello until the new build answers 20 times in a row.
# Printed: wrk's rps, p99, socket errors (connect/read/write/timeout) and non-2xx, and per
# upgrade the time from asking to the first of those 20 answers (median and max).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR=$(mktemp -d /tmp/upgradebench.XXXXXX)
trap 'rm -rf "$WORKDIR"' EXIT
python3 benches/harness/upgrade_harness.py "$WORKDIR"
