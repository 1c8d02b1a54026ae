#!/usr/bin/env bash
# Runs swapvisor through the shared reload-under-load harness (../shared/bench), in cmd mode:
# 40 reloads every 200 ms under wrk load, every 5th config invalid, then reload-to-serving.
#
#   cargo build --release
#   benches/harness/swapvisor.sh                    # reload through the admin API (default)
#   TRIGGER=hup benches/harness/swapvisor.sh        # reload through SIGHUP
#   TRIGGER=watch benches/harness/swapvisor.sh      # reload through --watch (timed from the write)
#   INPROC=1 TRIGGER=hup benches/harness/swapvisor.sh  # the harness sends SIGHUP itself (or, for
#                                                    # the admin API, the POST), like its nginx
#                                                    # and caddy modes: use this to compare
#
# Needs wrk and python3. Everything runs on 127.0.0.1. Prints the harness's report; its last
# line is the SUMMARY. SWAPVISOR (default: target/release/swapvisor) and HARNESS (default:
# ../shared/bench/reload_under_load.sh) can be overridden, as can every harness knob.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

if [ "${1:-}" = write-config ]; then
  # Called by the harness for every config. Env: HOST PORT WORKDIR CONFIG_FILE VERSION INVALID
  tail=""; [ "$INVALID" = 1 ] && tail="    steps: ["       # INVALID=1: a YAML syntax error
  cat > "$CONFIG_FILE.tmp" <<YAML
modules:
  - name: web
    type: http.server
    config: { address: "$HOST:$PORT" }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, method: GET, path: /hello } }
    steps:
      - name: greet
        type: step.set
        config: { values: { message: "hello {{ request.query.name }}" } }
      - name: respond
        type: step.json_response
        config: { status: 200, body: { message: "{{ greet.message }}", version: "$VERSION" } }
$tail
YAML
  mv -f "$CONFIG_FILE.tmp" "$CONFIG_FILE"
  exit 0
fi

SWAPVISOR="${SWAPVISOR:-$ROOT/target/release/swapvisor}"
HARNESS="${HARNESS:-$ROOT/../shared/bench/reload_under_load.sh}"
[ -x "$SWAPVISOR" ] || { echo "build it first: cargo build --release ($SWAPVISOR missing)" >&2; exit 2; }
ADMIN_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export ADMIN_PORT SWAPVISOR

export CMD_NAME="${CMD_NAME:-swapvisor-${TRIGGER:-api}}"
export CMD_CONFIG="bash '$HERE/swapvisor.sh' write-config"
export CONFIG_FILE_EXT=yaml
case "${TRIGGER:-api}" in
  api)
    export CMD_START='exec "$SWAPVISOR" --log warn run "$CONFIG_FILE" --admin "127.0.0.1:$ADMIN_PORT"'
    # curl -f would fail on the 400 of an invalid config; the harness judges by what is served.
    export CMD_RELOAD='curl -sS -o /dev/null -X POST "http://127.0.0.1:$ADMIN_PORT/api/v1/admin/engine/reload"'
    # In-process, as the harness's caddy mode posts: no curl start-up on the clock.
    [ "${INPROC:-0}" = 1 ] && export CMD_RELOAD="http-post:http://127.0.0.1:$ADMIN_PORT/api/v1/admin/engine/reload"
    ;;
  hup)
    export CMD_START='exec "$SWAPVISOR" --log warn run "$CONFIG_FILE" --admin off'
    export CMD_RELOAD='kill -HUP "$SERVER_PID"'
    # In-process, as the harness's nginx mode signals: no shell start-up on the clock.
    [ "${INPROC:-0}" = 1 ] && export CMD_RELOAD='signal:HUP'
    ;;
  watch)
    export CMD_START='exec "$SWAPVISOR" --log warn run "$CONFIG_FILE" --admin off --watch'
    export CMD_RELOAD=':'
    export R2S_FROM=write
    ;;
  *) echo "TRIGGER must be api, hup or watch" >&2; exit 2 ;;
esac
exec "$HARNESS" cmd
