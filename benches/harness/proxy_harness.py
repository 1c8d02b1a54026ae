#!/usr/bin/env python3
"""The engine of benches/harness/proxy.sh: nginx, Caddy, HAProxy and swapvisor as reverse
proxies in front of one backend, under wrk load and reload storms, and a WebSocket across
reloads. Run it through proxy.sh, whose header documents what is measured and every knob.
python3 standard library only; every socket is on 127.0.0.1."""
import base64
import hashlib
import http.client
import math
import os
import re
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"  # the only address this harness ever talks to
E = os.environ
WORKDIR = sys.argv[1]
SERVERS = E.get("SERVERS", "nginx caddy haproxy swapvisor").split()
CONNS = [int(c) for c in E.get("CONNS", "16 256").replace(",", " ").split()]
THREADS = int(E.get("THREADS", 2))
DURATION = int(E.get("DURATION", 10))
WARMUP = int(E.get("WARMUP", 2))
RELOADS = int(E.get("RELOADS", 40))
INTERVAL = int(E.get("INTERVAL_MS", 200)) / 1000
INVALID_EVERY = int(E.get("INVALID_EVERY", 5))
STORM_DELAY = float(E.get("STORM_DELAY", 1))
WS_SERVERS = E.get("WS_SERVERS", " ".join(SERVERS)).split()
WS_RELOADS = int(E.get("WS_RELOADS", 100))
WS_INTERVAL = int(E.get("WS_INTERVAL_MS", 100)) / 1000
WS_FRAMES = int(E.get("WS_FRAMES", 3))
WS_SETTLE = int(E.get("WS_SETTLE_MS", 1500)) / 1000
WS_TIMEOUT = float(E.get("WS_TIMEOUT", 2))
BACKEND_WORKERS = E.get("BACKEND_WORKERS", "1")
BASELINE = E.get("BASELINE", "1") == "1"
POOL = int(E.get("POOL", max(CONNS)))
NGINX_WORKERS = E.get("NGINX_WORKERS", "auto")
HAPROXY_THREADS = E.get("HAPROXY_THREADS", "")
SWAPVISOR = E.get("SWAPVISOR", "")
VERBOSE = E.get("VERBOSE", "1") == "1"
BIG = 1_000_000_000  # "no cap" for nginx's keepalive_requests


def now():
    return time.monotonic()


def log(*a):
    print(*a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def tail(path, n=15):
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError as e:
        return f"(no {path}: {e})"


def http_get(port, path, timeout=1.5):
    """One GET on a new connection: (status, body, error)."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body, None
    except Exception as e:  # noqa: BLE001 -- any failure is a result here
        return None, "", type(e).__name__


def served_version(port):
    st, body, err = http_get(port, "/version")
    m = re.search(r"v\d+", body)
    return st, (m.group(0) if m else None), err


class Proc:
    """A process this harness started, in its own session; stopped by its pid, and whatever is
    left in the group it leads (old nginx or HAProxy workers) by that group's id."""

    def __init__(self, name, argv, env=None):
        self.outpath = os.path.join(WORKDIR, f"{name}.out")
        self.out = open(self.outpath, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = self.p.pid

    def stop(self, sig=signal.SIGTERM, grace=10):
        if self.p.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.out.close()
        return self.p.returncode


def wait_for(pred, limit=15.0, step=0.05):
    t0 = now()
    while now() - t0 < limit:
        if pred():
            return now() - t0
        time.sleep(step)
    return None


# ------------------------------------------------------------------ backends
class Backend:
    """nginx serving `return 200` on BACKEND port, and stub_status on another port: its
    `accepts` counter is every TCP connection the backend accepted (all ports)."""

    def __init__(self):
        self.dir = os.path.join(WORKDIR, "backend")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port, self.status_port = free_port(), free_port()
        d = self.dir
        self.conf = os.path.join(d, "nginx.conf")
        write_atomic(self.conf, f"""daemon off;
worker_processes {BACKEND_WORKERS};
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests {BIG};
    keepalive_timeout 300s;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    server {{
        listen {HOST}:{self.port} backlog=4096;
        location / {{ default_type application/json; return 200 '{{"backend":"ok"}}'; }}
    }}
    server {{ listen {HOST}:{self.status_port}; location / {{ stub_status; }} }}
}}
""")
        self.proc = Proc("backend", ["nginx", "-p", d + "/", "-c", self.conf, "-e", d + "/error.log"])
        if wait_for(lambda: http_get(self.port, "/")[0] == 200) is None:
            raise RuntimeError("backend nginx did not start:\n" + tail(self.proc.outpath) + tail(d + "/error.log"))

    def snapshot(self):
        """(accepts, requests) so far, read on a new connection (which itself adds one of each)."""
        st, body, err = http_get(self.status_port, "/", timeout=5)
        m = re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
        if st != 200 or not m:
            raise RuntimeError(f"stub_status unreadable: {st} {err} {body[:200]}")
        return int(m.group(1)), int(m.group(3))

    @staticmethod
    def delta(a, b):
        """Accepts and requests between two snapshots, without the second snapshot's own."""
        return b[0] - a[0] - 1, b[1] - a[1] - 1

    def stop(self):
        self.proc.stop(signal.SIGTERM)


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(sock):
    """One WebSocket frame: (opcode, payload), unmasked."""
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exact(sock, 8), "big")
    mask = recv_exact(sock, 4) if b1 & 0x80 else None
    data = recv_exact(sock, n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data


def frame(opcode, payload, masked):
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if masked else 0
    head += bytes([mbit | n]) if n < 126 else bytes([mbit | 126]) + n.to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


class WsBackend(socketserver.ThreadingTCPServer):
    """A WebSocket echo backend: answers the upgrade with 101, then echoes every frame."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.accepted = 0
        super().__init__((HOST, 0), WsHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class WsHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.accepted += 1
        s = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return
            head += chunk
        m = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head)
        if not m:
            s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + ws_accept(m.group(1)) + b"\r\n\r\n")
        try:
            while True:
                op, data = read_frame(s)
                s.sendall(frame(op, data, masked=False))
                if op == 8:
                    return
        except (EOFError, OSError):
            return


# ------------------------------------------------------------------ the proxies
def drop_last_brace(text):
    i = text.rindex("}")
    return text[:i] + text[i + 1:]


class Server:
    """One proxy under test: writes its config (VERSION is served at /version, the route the
    reloads change), starts, reloads, stops."""
    name = "?"

    def __init__(self, backend, ws_port):
        self.bport, self.ws_port = backend.port, ws_port
        self.port = free_port()
        self.dir = os.path.join(WORKDIR, f"{self.name}.{self.port}")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)  # nginx workers run as 'nobody' when started by root
        self.proc = None

    def write_config(self, version, invalid=False):
        t = self.text(version)
        write_atomic(self.conf, self.invalidate(t) if invalid else t)

    def invalidate(self, text):
        return drop_last_brace(text)

    def stop(self):
        return self.proc.stop(signal.SIGTERM) if self.proc else None

    def report(self):
        """What the proxy's own log or CLI says, read before it is stopped."""
        try:
            return self.describe_log()
        except OSError as e:
            return f"(no report: {e})"

    def describe_log(self):
        return ""


class Nginx(Server):
    name = "nginx"

    def __init__(self, *a):
        super().__init__(*a)
        self.conf = os.path.join(self.dir, "nginx.conf")

    def text(self, version):
        d = self.dir
        return f"""daemon off;
worker_processes {NGINX_WORKERS};
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests {BIG};
    keepalive_timeout 300s;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    upstream backend {{
        server {HOST}:{self.bport};
        keepalive {POOL};
        keepalive_requests {BIG};
        keepalive_timeout 300s;
    }}
    upstream wsbackend {{ server {HOST}:{self.ws_port}; }}
    server {{
        listen {HOST}:{self.port} backlog=4096;
        location = /hello {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /ws {{
            proxy_pass http://wsbackend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }}
        location = /version {{ default_type text/plain; return 200 '{version}'; }}
        location / {{ return 404; }}
    }}
}}
"""

    def start(self):
        self.proc = Proc(f"{self.name}.{self.port}", ["nginx", "-p", self.dir + "/", "-c", self.conf,
                                                       "-e", self.dir + "/error.log"])

    def trigger(self):
        os.kill(self.proc.pid, signal.SIGHUP)
        return "SIGHUP to the master"

    def describe_log(self):
        lines = open(os.path.join(self.dir, "error.log"), errors="replace").read().splitlines()
        emerg = [x for x in lines if "[emerg]" in x]
        alerts = [x for x in lines if "[alert]" in x or "[crit]" in x]
        return (f"nginx error.log: {sum('(SIGHUP) received' in x for x in lines)} SIGHUP, "
                f"{len(emerg)} [emerg] (rejected configs), {len(alerts)} [alert]/[crit]"
                + "".join("\n  " + x for x in alerts[:3]))


class Caddy(Server):
    name = "caddy"

    def __init__(self, *a):
        super().__init__(*a)
        self.admin = free_port()
        self.conf = os.path.join(self.dir, "Caddyfile")
        self.env = dict(os.environ, XDG_CONFIG_HOME=self.dir + "/xdg-config",
                        XDG_DATA_HOME=self.dir + "/xdg-data")

    def text(self, version):
        return f"""{{
\tadmin {HOST}:{self.admin}
\tauto_https off
}}

http://{HOST}:{self.port} {{
\tbind {HOST}
\thandle /hello {{
\t\treverse_proxy {HOST}:{self.bport} {{
\t\t\ttransport http {{
\t\t\t\tkeepalive 300s
\t\t\t\tkeepalive_idle_conns {POOL}
\t\t\t\tkeepalive_idle_conns_per_host {POOL}
\t\t\t}}
\t\t}}
\t}}
\thandle /ws {{
\t\treverse_proxy {HOST}:{self.ws_port}
\t}}
\thandle /version {{
\t\trespond "{version}" 200
\t}}
\thandle {{
\t\trespond 404
\t}}
}}
"""

    def invalidate(self, text):
        # An unknown directive: Caddy 2.6 accepts a Caddyfile whose last '}' is missing.
        i = text.rindex("}")
        return text[:i] + "\tnot_a_directive\n" + text[i:]

    def start(self):
        self.proc = Proc(f"{self.name}.{self.port}", ["caddy", "run", "--config", self.conf,
                                                       "--adapter", "caddyfile"], env=self.env)

    def trigger(self):
        with open(self.conf, "rb") as f:
            data = f.read()
        c = http.client.HTTPConnection(HOST, self.admin, timeout=15)
        c.request("POST", "/load", body=data, headers={"Content-Type": "text/caddyfile"})
        r = c.getresponse()
        msg = r.read().decode("utf-8", "replace").strip()
        c.close()
        return f"POST /load: HTTP {r.status} {msg[:80]}".strip()

    def describe_log(self):
        lines = open(self.proc.outpath, errors="replace").read().splitlines()
        errs = [x for x in lines if '"level":"error"' in x]
        return f"caddy log: {len(lines)} lines, {len(errs)} at level error" + "".join(
            "\n  " + x[:200] for x in errs[:3])


class Haproxy(Server):
    """Master-worker mode (-W) with a master CLI (-S); reloads with the CLI's `reload`, which
    re-executes the master: it passes the listening sockets to the new worker (the -x
    mechanism, over a socketpair) and sends the old workers the soft-stop -sf signal. This is
    what HAProxy's management guide documents as the seamless reload."""
    name = "haproxy"

    def __init__(self, *a):
        super().__init__(*a)
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        self.master = os.path.join(self.dir, "master.sock")

    def text(self, version):
        nb = f"    nbthread {HAPROXY_THREADS}\n" if HAPROXY_THREADS else ""
        return f"""global
    maxconn 8192
{nb}
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 3600s
    timeout http-keep-alive 300s

frontend fe
    bind {HOST}:{self.port}
    http-request return status 200 content-type text/plain string "{version}" if {{ path /version }}
    use_backend ws if {{ path /ws }}
    default_backend be

backend be
    server b1 {HOST}:{self.bport}

backend ws
    server w1 {HOST}:{self.ws_port}
"""

    def invalidate(self, text):
        return text + "    this-is-not-a-keyword\n"  # a fatal parse error in the last section

    def start(self):
        self.proc = Proc(f"{self.name}.{self.port}", ["haproxy", "-W", "-S", self.master, "-f", self.conf])

    def cli(self, command, timeout=10):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.master)
            s.sendall(command.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)  # one command, then the answer until the master closes
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode("utf-8", "replace")
                out += chunk

    def trigger(self):
        self.cli("reload")
        return "master CLI reload"

    def describe_log(self):
        try:
            procs = self.cli("show proc").strip()
        except OSError as e:
            procs = f"(show proc failed: {e})"
        return "haproxy master CLI `show proc`:\n" + "\n".join("  " + x for x in procs.splitlines())


class Swapvisor(Server):
    name = "swapvisor"

    def __init__(self, *a):
        super().__init__(*a)
        self.conf = os.path.join(self.dir, "swapvisor.yaml")

    def text(self, version):
        return f"""modules:
  - name: web
    type: http.server
    config: {{ address: "{HOST}:{self.port}" }}
  - name: backend
    type: http.upstream
    config: {{ targets: ["{HOST}:{self.bport}"], maxIdlePerTarget: {POOL}, idleTimeout: 300s }}
  - name: wsbackend
    type: http.upstream
    config: {{ targets: ["{HOST}:{self.ws_port}"] }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, method: GET, path: /hello }} }}
    steps:
      - {{ name: forward, type: step.proxy, config: {{ upstream: backend }} }}
  ws:
    trigger: {{ type: http, config: {{ server: web, path: /ws }} }}
    steps:
      - {{ name: tunnel, type: step.proxy, config: {{ upstream: wsbackend }} }}
  version:
    trigger: {{ type: http, config: {{ server: web, method: GET, path: /version }} }}
    steps:
      - {{ name: respond, type: step.json_response, config: {{ status: 200, body: {{ version: "{version}" }} }} }}
"""

    def invalidate(self, text):
        return text + "    steps: [\n"  # a YAML syntax error

    def start(self):
        self.proc = Proc(f"{self.name}.{self.port}", [SWAPVISOR, "--log", "warn", "run", self.conf,
                                                       "--admin", "off"])

    def trigger(self):
        os.kill(self.proc.pid, signal.SIGHUP)
        return "SIGHUP"

    def describe_log(self):
        lines = open(self.proc.outpath, errors="replace").read().splitlines()
        return f"swapvisor log (warn and up): {len(lines)} lines" + "".join(
            "\n  " + x[:200] for x in lines[:3])


KINDS = {"nginx": Nginx, "caddy": Caddy, "haproxy": Haproxy, "swapvisor": Swapvisor}


# ------------------------------------------------------------------ wrk
def ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s.strip())
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)] if m else math.nan


def parse_wrk(out):
    r = {"rps": math.nan, "p50": math.nan, "p99": math.nan, "requests": 0, "non2xx": 0,
         "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else math.nan
    for pc, val in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M):
        r["p" + pc] = ms(val)
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r.update(connect=int(m.group(1)), read=int(m.group(2)), write=int(m.group(3)), timeout=int(m.group(4)))
    return r


def wrk(port, conns, seconds):
    cmd = ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://{HOST}:{port}/hello"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    WRKS.append(p)
    return p, " ".join(cmd)


WRKS = []  # every wrk started, so that an interrupted run stops the one still running


def finish(p, seconds):
    try:
        out, _ = p.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out += "\n(wrk killed: exceeded its time limit)\n"
    return out


def show(out):
    if VERBOSE:
        log("\n".join("    " + x for x in out.rstrip().splitlines()))


def steady(port, conns, backend):
    """A steady wrk run of DURATION s: its parse, plus backend accepts/requests and seconds."""
    a = backend.snapshot()
    t0 = now()
    p, cmd = wrk(port, conns, DURATION)
    out = finish(p, DURATION)
    secs = now() - t0
    acc, req = Backend.delta(a, backend.snapshot())
    log(f"  steady: {cmd}")
    show(out)
    return dict(parse_wrk(out), accepts=acc, breq=req, secs=secs)


# ------------------------------------------------------------------ phases
def start_server(kind, backend, ws_port):
    srv = KINDS[kind](backend, ws_port)
    srv.version, srv.valid = 1, "v1"
    srv.write_config("v1")
    srv.start()
    if wait_for(lambda: served_version(srv.port)[1] == "v1") is None or \
            wait_for(lambda: http_get(srv.port, "/hello")[0] == 200, 5) is None:
        log(tail(srv.proc.outpath))
        srv.stop()
        raise RuntimeError(f"{kind} did not serve v1 and /hello within 15 s")
    return srv


def reload_once(srv, invalid):
    srv.version += 1
    ver = f"v{srv.version}"
    t0 = now()
    try:
        srv.write_config(ver, invalid)
        detail = srv.trigger()
    except Exception as e:  # noqa: BLE001 -- a failed trigger is a result
        detail = f"trigger failed: {type(e).__name__}: {e}"
    if not invalid:
        srv.valid = ver  # an invalid config's marker is never used again
    return ver, (now() - t0) * 1000, detail


def storm(srv, conns, backend, steady_rate):
    """RELOADS reloads every INTERVAL under one wrk run that covers them all."""
    secs = max(DURATION, math.ceil(STORM_DELAY + RELOADS * INTERVAL + 1))
    a = backend.snapshot()
    t0 = now()
    p, cmd = wrk(srv.port, conns, secs)
    time.sleep(STORM_DELAY)
    ts = now()
    kept = applied = ninvalid = 0
    for i in range(1, RELOADS + 1):
        target = ts + (i - 1) * INTERVAL
        time.sleep(max(0.0, target - now()))
        invalid = INVALID_EVERY > 0 and i % INVALID_EVERY == 0
        last_valid = srv.valid
        ver, took, detail = reload_once(srv, invalid)
        time.sleep(max(0.0, target + 0.85 * INTERVAL - now()))
        st, served, err = served_version(srv.port)
        if invalid:
            ninvalid += 1
            verdict = ("kept-old" if served == last_valid else "APPLIED-INVALID!" if served == ver
                       else f"not-kept: {st} {served}")
            kept += verdict == "kept-old"
        else:
            verdict = "applied" if served == ver else "not-yet"
            applied += verdict == "applied"
        if VERBOSE:
            log(f"    reload {i:2d} {ver:>5} {'INVALID' if invalid else 'valid  '} {took:6.1f} ms "
                f"[{detail[:70]}] check: {st} {served} {err or ''} => {verdict}")
    out = finish(p, secs)
    wall = now() - t0
    acc, req = Backend.delta(a, backend.snapshot())
    log(f"  storm: {cmd} ({RELOADS} reloads every {INTERVAL * 1000:.0f} ms from {STORM_DELAY:.1f} s)")
    show(out)
    r = parse_wrk(out)
    extra = steady_rate * wall
    r.update(accepts=acc, breq=req, secs=wall, kept=kept, ninvalid=ninvalid, applied=applied,
             nvalid=RELOADS - ninvalid, per_reload=(acc - extra) / RELOADS if RELOADS else math.nan,
             raw_per_reload=acc / RELOADS if RELOADS else math.nan)
    return r


def run_load(kind, backend, ws_port, conns):
    srv = start_server(kind, backend, ws_port)
    log(f"\n=== {kind}, {conns} connections: pid {srv.proc.pid}, http://{HOST}:{srv.port}/hello, "
        f"config {srv.conf}")
    try:
        if WARMUP > 0:
            p, _ = wrk(srv.port, conns, WARMUP)
            w = parse_wrk(finish(p, WARMUP))
            log(f"  warm-up {WARMUP} s: {w['rps']:.0f} rps (not reported)")
            time.sleep(0.5)
        s = steady(srv.port, conns, backend)
        time.sleep(1)
        b = storm(srv, conns, backend, s["accepts"] / s["secs"])
        time.sleep(1)
        st, served, err = served_version(srv.port)
        b["final_ok"] = served == srv.valid
    finally:
        report = srv.report()
        log(f"  stopped (exit {srv.stop()}); {report}")
    log(f"RESULT server={kind} conns={conns} steady_rps={s['rps']:.0f} steady_p99_ms={s['p99']:.2f} "
        f"storm_rps={b['rps']:.0f} storm_p99_ms={b['p99']:.2f} "
        f"storm_sockerr_c/r/w/t={b['connect']}/{b['read']}/{b['write']}/{b['timeout']} "
        f"storm_non2xx={b['non2xx']} steady_backend_accepts={s['accepts']} in {s['secs']:.1f}s "
        f"storm_backend_accepts={b['accepts']} in {b['secs']:.1f}s "
        f"new_backend_conns_per_reload={b['per_reload']:.1f} raw_storm_accepts_per_reload={b['raw_per_reload']:.1f} "
        f"invalid_kept_old={b['kept']}/{b['ninvalid']} valid_applied={b['applied']}/{b['nvalid']} "
        f"backend_requests/wrk_requests={b['breq']}/{b['requests']} final_version_ok={b['final_ok']}")
    return s, b


def ws_run(kind, backend, wsb):
    """One WebSocket through the proxy; WS_RELOADS reloads of /version; WS_FRAMES frames echoed
    after each; then WS_SETTLE s and WS_FRAMES more (a close at the old engine's drain)."""
    srv = start_server(kind, backend, wsb.port)
    accepted0 = wsb.accepted
    sent = answered = applied = 0
    closed_at, error = None, None
    log(f"\n=== {kind}: WebSocket across {WS_RELOADS} reloads (pid {srv.proc.pid})")
    try:
        s = socket.create_connection((HOST, srv.port), timeout=WS_TIMEOUT)
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: " + f"{HOST}:{srv.port}".encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise EOFError("closed before the upgrade answer")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101") or ws_accept(key) not in head or rest:
            raise RuntimeError(f"upgrade not answered 101 with the right accept: {head[:200]!r}")

        def exchange(tag):
            nonlocal sent, answered
            for k in range(WS_FRAMES):
                payload = f"{tag}.{k}".encode()
                s.sendall(frame(1, payload, masked=True))
                sent += 1
                op, data = read_frame(s)
                if op == 8:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                    raise EOFError(f"the proxy sent a close frame, code {code} {data[2:40]!r}")
                if op != 1 or data != payload:
                    raise RuntimeError(f"echo mismatch: {op} {data[:40]!r} for {payload!r}")
                answered += 1

        ts = now()
        for i in range(1, WS_RELOADS + 1):
            time.sleep(max(0.0, ts + (i - 1) * WS_INTERVAL - now()))
            ver, _, _ = reload_once(srv, False)
            try:
                exchange(f"r{i}")
            except (OSError, EOFError, RuntimeError) as e:
                closed_at, error = i, f"{type(e).__name__}: {e}"
                break
            time.sleep(max(0.0, ts + (i - 0.15) * WS_INTERVAL - now()))
            applied += served_version(srv.port)[1] == ver
        if closed_at is None:
            time.sleep(WS_SETTLE)
            try:
                exchange("settled")
            except (OSError, EOFError, RuntimeError) as e:
                closed_at, error = "after-settle", f"{type(e).__name__}: {e}"
        if closed_at is None:
            s.sendall(frame(8, b"\x03\xe8", masked=True))
            op, _ = read_frame(s)
            error = None if op == 8 else f"close answered with opcode {op}"
        s.close()
    except (OSError, EOFError, RuntimeError) as e:
        closed_at, error = "handshake", f"{type(e).__name__}: {e}"
    finally:
        report = srv.report()
        log(f"  stopped (exit {srv.stop()}); {report}")
    survived = closed_at is None and sent == answered
    log(f"WSRESULT server={kind} reloads={WS_RELOADS} reloads_applied_at_check={applied} "
        f"frames_sent={sent} frames_answered={answered} survived={'yes' if survived else 'no'} "
        f"closed_at_reload={closed_at or '-'} backend_ws_connections={wsb.accepted - accepted0}"
        + (f" error=\"{error}\"" if error else ""))
    return dict(sent=sent, answered=answered, survived=survived, closed_at=closed_at)


def main():
    backend = Backend()
    wsb = WsBackend()
    log(f"# backend: nginx pid {backend.proc.pid}, worker_processes {BACKEND_WORKERS}, "
        f"http://{HOST}:{backend.port}/ (stub_status on {backend.status_port}); "
        f"WebSocket echo backend (python) on {wsb.port}")
    results, ws_results, base = {}, {}, {}
    try:
        if BASELINE:
            for c in CONNS:
                log(f"\n=== backend direct (no proxy), {c} connections")
                base[c] = steady(backend.port, c, backend)
                log(f"BASELINE conns={c} backend_direct_rps={base[c]['rps']:.0f} p99_ms={base[c]['p99']:.2f}")
        for kind in SERVERS:
            for c in CONNS:
                try:
                    results[(kind, c)] = run_load(kind, backend, wsb.port, c)
                except Exception as e:  # noqa: BLE001 -- report and go on with the next server
                    log(f"ERROR {kind} conns={c}: {type(e).__name__}: {e}")
        for kind in WS_SERVERS if WS_RELOADS > 0 else []:
            try:
                ws_results[kind] = ws_run(kind, backend, wsb)
            except Exception as e:  # noqa: BLE001
                log(f"ERROR {kind} websocket: {type(e).__name__}: {e}")
    finally:
        for p in WRKS:
            if p.poll() is None:
                p.kill()
                p.wait()
        backend.stop()
        wsb.shutdown()
    table(results, ws_results, base)


def table(results, ws_results, base):
    kinds = [k for k in SERVERS if any((k, c) in results for c in CONNS)] or SERVERS
    log("\n| | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))

    def row(label, f, c=None):
        cells = []
        for k in kinds:
            r = results.get((k, c)) if c is not None else ws_results.get(k)
            cells.append(f(*r) if isinstance(r, tuple) else f(r) if r else "—")
        log(f"| {label} | " + " | ".join(cells) + " |")

    for c in CONNS:
        b = f" (backend direct {base[c]['rps']:,.0f})" if c in base else ""
        row(f"{c} conns: steady rps{b}", lambda s, b: f"{s['rps']:,.0f}", c)
        row(f"{c} conns: steady / storm p99 ms", lambda s, b: f"{s['p99']:.2f} / {b['p99']:.2f}", c)
        row(f"{c} conns: storm socket errors c/r/w/t", lambda s, b: f"{b['connect']}/{b['read']}/{b['write']}/{b['timeout']}", c)
        row(f"{c} conns: storm non-2xx", lambda s, b: f"{b['non2xx']}", c)
        row(f"{c} conns: new backend conns per reload, net (raw)", lambda s, b: f"{b['per_reload']:.1f} ({b['raw_per_reload']:.1f})", c)
        row(f"{c} conns: invalid kept old / valid applied", lambda s, b: f"{b['kept']}/{b['ninvalid']}, {b['applied']}/{b['nvalid']}", c)
    if ws_results:
        row(f"WebSocket across {WS_RELOADS} reloads: frames answered / sent",
            lambda w: f"{w['answered']} / {w['sent']}")
        row("WebSocket: connection survived", lambda w: "yes" if w["survived"] else f"no (at reload {w['closed_at']})")


def _term(signum, _frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _term)
signal.signal(signal.SIGINT, _term)
main()
