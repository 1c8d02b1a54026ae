#!/usr/bin/env python3
"""The engine of benches/harness/upgrade.sh: binary upgrades of swapvisor and nginx under wrk
load. upgrade.sh's header documents what is measured and every knob. python3 standard
library only; every socket is on 127.0.0.1."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
E = os.environ
WORKDIR = sys.argv[1]
SERVERS = E.get("SERVERS", "swapvisor nginx").split()
CONNS = [int(c) for c in E.get("CONNS", "16 256").replace(",", " ").split()]
THREADS = int(E.get("THREADS", 2))
DURATION = int(E.get("DURATION", 30))
UPGRADES = int(E.get("UPGRADES", 10))
SWAPVISOR = os.path.abspath(E.get("SWAPVISOR", "target/release/swapvisor"))


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get(port, path="/hello", method="GET", body=None, timeout=30):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def build_answers(port):
    try:
        status, body = get(port, timeout=2)
        return json.loads(body).get("build") if status == 200 else None
    except (OSError, ValueError):
        return None


def settled(port, build):
    """Fresh connections until `build` answers 20 times in a row; when the first of them was."""
    streak, first = 0, None
    deadline = time.monotonic() + 30
    while streak < 20 and time.monotonic() < deadline:
        if build_answers(port) == build:
            streak += 1
            first = first or time.monotonic()
        else:
            streak, first = 0, None
    return first


class Swapvisor:
    name = "swapvisor"

    def __init__(self):
        self.port, self.admin = free_port(), free_port()
        config = os.path.join(WORKDIR, "swapvisor.yaml")
        with open(config, "w") as f:
            f.write(
                "modules:\n"
                f"  - {{ name: web, type: http.server, config: {{ address: \"{HOST}:{self.port}\" }} }}\n"
                "pipelines:\n"
                "  hello:\n"
                "    trigger: { type: http, config: { server: web, method: GET, path: /hello } }\n"
                "    steps:\n"
                "      - { name: r, type: step.json_response, config: { body: { build: \"${BUILD}\" } } }\n"
            )
        self.builds = {}
        for build in "ab":
            path = os.path.join(WORKDIR, f"swapvisor-{build}.sh")
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\nexport BUILD={build}\nexec {SWAPVISOR} \"$@\"\n")
            os.chmod(path, 0o755)
            self.builds[build] = path
        self.process = subprocess.Popen(
            [self.builds["a"], "run", config, "--admin", f"{HOST}:{self.admin}",
             "--state-dir", "off", "--log", "warn"],
            start_new_session=True)
        wait_for(lambda: build_answers(self.port) == "a", "swapvisor")

    def upgrade(self, build):
        status, body = get(self.admin, "/api/v1/admin/upgrade", "POST",
                           json.dumps({"binary": self.builds[build]}))
        answer = json.loads(body)
        if status != 200:
            raise SystemExit(f"upgrade failed: {answer}")
        self.pid = answer["newPid"]

    def stop(self):
        pid = getattr(self, "pid", self.process.pid)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().split()[2] == "Z", "swapvisor to stop")
        self.process.poll()


class Nginx:
    name = "nginx"

    def __init__(self):
        self.port = free_port()
        self.dir = os.path.join(WORKDIR, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.pidfile = os.path.join(self.dir, "nginx.pid")
        self.write("a")
        # Daemonized: nginx ignores USR2 while the process that started it is its parent.
        subprocess.run(["/usr/sbin/nginx", "-p", self.dir, "-c", self.conf], check=True,
                       start_new_session=True)
        wait_for(lambda: build_answers(self.port) == "a", "nginx")

    def write(self, build):
        with open(self.conf, "w") as f:
            f.write(
                "daemon on; worker_processes auto; pid %s; error_log %s/logs/error.log warn;\n"
                "events { worker_connections 4096; }\n"
                "http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s;\n"
                "  server { listen %s:%d; location /hello { default_type application/json;\n"
                "    return 200 '{\"build\":\"%s\"}'; } } }\n"
                % (self.pidfile, self.dir, HOST, self.port, build))

    def master(self):
        with open(self.pidfile) as f:
            return int(f.read())

    def upgrade(self, build):
        old = self.master()
        self.write(build)
        os.kill(old, signal.SIGUSR2)
        # The old master renames its pid file to .oldbin; the new one writes the pid file.
        wait_for(lambda: os.path.exists(self.pidfile) and self.master() != old, "the new master")
        os.kill(old, signal.SIGWINCH)
        os.kill(old, signal.SIGQUIT)
        wait_for(lambda: not os.path.exists(f"/proc/{old}") or
                 open(f"/proc/{old}/stat").read().split()[2] == "Z", "the old master to exit")

    def stop(self):
        os.kill(self.master(), signal.SIGQUIT)
        wait_for(lambda: not os.path.exists(self.pidfile), "nginx to stop")


def run(server_class, conns):
    server = server_class()
    try:
        wrk = subprocess.Popen(
            ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{DURATION}s", "--latency",
             f"http://{HOST}:{server.port}/hello"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        spacing = (DURATION - 4) / max(UPGRADES, 1)
        switches, build = [], "a"
        for _ in range(UPGRADES):
            build = "b" if build == "a" else "a"
            asked = time.monotonic()
            server.upgrade(build)
            first = settled(server.port, build)
            switches.append((first - asked) * 1000 if first else float("inf"))
            time.sleep(max(0.0, spacing - (time.monotonic() - asked)))
        out, _ = wrk.communicate()
    finally:
        server.stop()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = "/".join(errors.groups()) if errors else "0/0/0/0"
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx.group(1)) if non2xx else 0
    switches.sort()
    median = switches[len(switches) // 2]
    print(f"RESULT server={server.name} conns={conns} upgrades={UPGRADES} rps={rps:.0f} p99={p99} "
          f"socket_errors_crwt={errors} non2xx={non2xx} "
          f"switch_ms_median={median:.1f} switch_ms_max={switches[-1]:.1f}", flush=True)


for conns in CONNS:
    for name in SERVERS:
        run({"swapvisor": Swapvisor, "nginx": Nginx}[name], conns)
