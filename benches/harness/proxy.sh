#!/usr/bin/env bash
# proxy.sh -- nginx, Caddy, HAProxy and swapvisor as reverse proxies, one after another in one
# sitting, in front of the same backend, under wrk load and reload storms; then a WebSocket
# through each across reloads.
#
# Usage (from the repository root):
#   cargo build --release -p swapvisor-cli
#   benches/harness/proxy.sh > /tmp/results-proxy.txt        # ~5 min with the defaults
#   DURATION=3 INTERVAL_MS=50 WS_RELOADS=20 CONNS=16 benches/harness/proxy.sh   # a quick check
#
# Needs: bash, python3 (standard library only), wrk, nginx (with stub_status: Debian's has it),
# caddy, haproxy (apt-get install -y nginx caddy haproxy wrk). Only the proxies in SERVERS are
# required. Everything listens on and talks to 127.0.0.1 only, on free ports; the harness starts
# every process itself (each in its own session), in a temp dir /tmp/proxybench.XXXXXX, and
# stops each by its pid (then anything left in the process group it leads, such as old nginx or
# HAProxy workers). The engine is proxy_harness.py beside this script.
#
# The backend: nginx (worker_processes BACKEND_WORKERS) answering `return 200` with a 16-byte
# JSON body on every path, keep-alive without a request cap, and `stub_status` on a second port.
# Its `accepts` counter is the number of TCP connections the backend accepted; the harness
# reads it before and after each wrk run (each read opens one connection itself, subtracted).
# With BASELINE=1 wrk first runs against the backend directly, with no proxy, to show it is not
# the bottleneck (a proxy does at least the backend's work plus its own). A WebSocket echo
# backend (python, in the harness process) answers `GET /ws` with 101 and echoes every frame.
#
# Each proxy serves three routes: /hello proxied to the backend (the route wrk loads), /ws
# proxied to the echo backend, and /version answered by the proxy itself with the config's
# version marker (v1, v2, ...): the only thing a reload changes. Configured alike where each
# has the knob: keep-alive to clients and to the backend without a per-connection request cap
# and 300 s idle timeouts, and up to POOL idle backend connections kept (nginx `keepalive`,
# Caddy `keepalive_idle_conns_per_host`, swapvisor `maxIdlePerTarget`; HAProxy keeps idle
# server connections by default, `http-reuse safe`). Access logs off.
#   nginx     upstream block + keepalive, proxy_http_version 1.1; worker_processes NGINX_WORKERS.
#             Reload: kill(master, SIGHUP), in-process.
#   caddy     reverse_proxy. Reload: POST /load (Content-Type text/caddyfile) to its admin API.
#   haproxy   master-worker mode: `haproxy -W -S <master socket> -f cfg`. Reload: `reload` on
#             the master CLI, which re-executes the master; it hands the listening sockets to
#             the new worker (the -x mechanism over a socketpair, "to avoid missing any new
#             connection when reloading", management guide) and soft-stops the old workers
#             (-sf). That is HAProxy's documented seamless reload. nbthread HAPROXY_THREADS.
#   swapvisor target/release/swapvisor run <config.yaml> --admin off --log warn; the upstream is
#             an http.upstream, /hello a step.proxy. Reload: rewrite the YAML, kill(pid, SIGHUP).
#
# Per proxy and per connection count in CONNS, a fresh proxy process runs:
#   warm-up  wrk for WARMUP s (fills the connection pools; not reported)
#   steady   wrk -t$THREADS -c$CONNS -d${DURATION}s --latency http://127.0.0.1:PORT/hello
#   storm    the same wrk for max(DURATION, STORM_DELAY + RELOADS*INTERVAL + 1) s while RELOADS
#            reloads run every INTERVAL_MS from STORM_DELAY s in; every INVALID_EVERY-th is an
#            invalid config (nginx, caddy: last '}' removed; haproxy: an unknown keyword; swapvisor:
#            a YAML syntax error). The valid ones change only the /version body. At 85 % of each
#            interval a new connection reads /version: valid -> "applied" if the new marker is
#            served, invalid -> "kept old" if the last valid one still is.
#   Printed, one RESULT line each (and a table at the end):
#     steady rps, steady p99         wrk's Requests/sec and 99% latency in the steady run
#     storm rps, storm p99           the same during the storm
#     storm socket errors c/r/w/t    wrk's connect/read/write/timeout errors during the storm
#                                    (read: a keep-alive connection closed while a request was
#                                    in flight, the usual reload signature)
#     storm non-2xx                  wrk's "Non-2xx or 3xx responses" during the storm
#     new backend conns per reload   (A_storm - R_steady * T_storm) / RELOADS, where A_storm is
#                                    the backend's accepts during the storm run, T_storm its wall
#                                    time and R_steady the backend's accepts per second during
#                                    the steady run (about 0 once the pools are warm). So: the
#                                    backend connections the reloads caused, per reload,
#                                    invalid ones included. In brackets (and in the RESULT line
#                                    as raw_storm_accepts_per_reload): simply A_storm / RELOADS.
#                                    A pool still growing in the steady run makes R_steady too
#                                    high and the net figure slightly negative: a longer WARMUP
#                                    fixes that; raw accepts are in the RESULT line.
#     invalid kept old / valid applied  the /version checks above
#     backend_requests/wrk_requests  a sanity check that the load went through the proxy
# Then, per proxy in WS_SERVERS, a fresh proxy process and one WebSocket through it: WS_RELOADS
# valid reloads (changing /version only), one every WS_INTERVAL_MS; after each, WS_FRAMES text
# frames are sent (masked) and each must be echoed within WS_TIMEOUT s; WS_SETTLE_MS after the
# last reload (time for old workers or engines to drain) WS_FRAMES more; then a close
# handshake. Printed (WSRESULT): frames sent / answered, whether the connection survived (every
# frame answered, never closed), the reload at which it closed, how many reloads were seen
# applied at a /version check after the frames, and the echo backend's connections.
#
# Knobs (env), with defaults:
#   SERVERS="nginx caddy haproxy swapvisor"   which proxies, in this order
#   CONNS="16 256"        wrk connection counts; each gets its own runs (one value is fine)
#   THREADS=2             wrk threads
#   DURATION=10           seconds of the steady run (and the storm run's minimum)
#   WARMUP=2              seconds of unreported wrk before the steady run (0: none)
#   RELOADS=40 INTERVAL_MS=200 INVALID_EVERY=5 (0: none invalid) STORM_DELAY=1 (s)
#   POOL=max(CONNS)       idle backend connections each proxy may keep
#   BACKEND_WORKERS=1     the backend nginx's worker_processes
#   BASELINE=1            wrk against the backend directly first (0: skip)
#   NGINX_WORKERS=auto    the proxy nginx's worker_processes
#   HAPROXY_THREADS=      HAProxy's nbthread (empty: its default, one per CPU)
#   WS_SERVERS=$SERVERS   proxies for the WebSocket run (empty or WS_RELOADS=0: skip it)
#   WS_RELOADS=100 WS_INTERVAL_MS=100 WS_FRAMES=3 WS_SETTLE_MS=1500 WS_TIMEOUT=2 (s)
#   SWAPVISOR=target/release/swapvisor (under CARGO_TARGET_DIR if that is set)
#   VERBOSE=1             print wrk's output and one line per reload (0: results only)
#   KEEP=0                1 keeps the temp dir with every config and log
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SERVERS="${SERVERS:-nginx caddy haproxy swapvisor}"
export SERVERS
need() { command -v "$1" >/dev/null 2>&1 || { echo "missing dependency: $1 (apt-get install -y $2)" >&2; exit 2; }; }
need python3 python3; need wrk wrk; need nginx nginx   # nginx is also the backend
for s in $SERVERS; do
  case "$s" in
    nginx) ;;
    caddy) need caddy caddy ;;
    haproxy) need haproxy haproxy ;;
    swapvisor)
      SWAPVISOR="${SWAPVISOR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/swapvisor}"
      [ -x "$SWAPVISOR" ] || { echo "build it first: cargo build --release -p swapvisor-cli ($SWAPVISOR missing)" >&2; exit 2; }
      export SWAPVISOR ;;
    *) echo "unknown server in SERVERS: $s (nginx caddy haproxy swapvisor)" >&2; exit 2 ;;
  esac
done

WORKDIR="$(mktemp -d /tmp/proxybench.XXXXXX)"
chmod 755 "$WORKDIR"   # nginx workers run as 'nobody' when started by root
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# temp dir kept: $WORKDIR"; else rm -rf -- "$WORKDIR"; fi; }
trap cleanup EXIT

echo "# proxy.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(uname -r), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(nginx -v 2>&1); $(command -v caddy >/dev/null && echo "caddy $(caddy version | cut -d' ' -f1)");" \
     "$(command -v haproxy >/dev/null && haproxy -v | head -1 | cut -d' ' -f1-3); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
[ -n "${SWAPVISOR:-}" ] && echo "# swapvisor: $SWAPVISOR ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "# SERVERS=\"$SERVERS\" CONNS=\"${CONNS:-16 256}\" THREADS=${THREADS:-2} DURATION=${DURATION:-10}" \
     "WARMUP=${WARMUP:-2} RELOADS=${RELOADS:-40} INTERVAL_MS=${INTERVAL_MS:-200} INVALID_EVERY=${INVALID_EVERY:-5}" \
     "POOL=${POOL:-max(CONNS)} BACKEND_WORKERS=${BACKEND_WORKERS:-1} NGINX_WORKERS=${NGINX_WORKERS:-auto}" \
     "HAPROXY_THREADS=${HAPROXY_THREADS:-default} WS_RELOADS=${WS_RELOADS:-100} WS_INTERVAL_MS=${WS_INTERVAL_MS:-100}"
# In the background, so that a SIGTERM or Ctrl-C reaches it and it stops what it started.
python3 "$HERE/proxy_harness.py" "$WORKDIR" &
PY_PID=$!
trap 'kill -TERM "$PY_PID" 2>/dev/null || true' TERM INT
rc=0; wait "$PY_PID" || rc=$?
if kill -0 "$PY_PID" 2>/dev/null; then rc=0; wait "$PY_PID" || rc=$?; fi
exit "$rc"
