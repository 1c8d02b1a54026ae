#!/usr/bin/env python3
"""counter: swapvisor's `counter` behaviour as a process plugin (protocol version 1).

A process plugin reads JSON-RPC 2.0 requests on stdin and writes one response per request on
stdout, one JSON object per line. stdout carries protocol lines only; logs go to stderr, which
the runtime logs line by line under the plugin's name. The protocol: docs/PLUGIN_PROTOCOL.md.

    operations   increment  args null or {"by": n} (default 1)  -> {"count": n}
                 get        args ignored                         -> {"count": n}
    step type    counter.add  args {"config": {"by": n}, "input": ...}, adds `by` (default 1)
    settings     {"start": n}  the count of a fresh instance (default 0)
                 {"checkpoint": true}  send the count as a state/checkpoint after every change
    state        {"count": n}  exported by the old process, imported by the new on a reload;
                 with checkpoints, also imported after a crash, a revert or a restart

Python 3 standard library only. COUNTER_VERSION overrides the version reported in status.
"""

import json
import os
import sys

PROTOCOL_VERSION = 1
KIND = "counter"
VERSION = os.environ.get("COUNTER_VERSION", "1.0.0")
OPS = ["increment", "get"]
STEP_TYPES = ["counter.add"]
DEFAULT_MAX_LINE_BYTES = 1048576  # until `initialize` says otherwise

# The protocol's error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
OP_FAILED = 1


class Failure(Exception):
    """Raised by a method: answered as {"error": {"code": code, "message": message}}."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def log(message):
    """Logs go to stderr (never stdout, which is for protocol lines only)."""
    print(message, file=sys.stderr, flush=True)


def integer(value, what, code=OP_FAILED):
    """A JSON integer (Python's bool is an int, but JSON's true is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Failure(code, f"{what} must be an integer, got {json.dumps(value)}")
    return value


def amount(value, what):
    """`by` from null or {"by": n}, default 1."""
    if value is None:
        return 1
    if not isinstance(value, dict) or set(value) - {"by"}:
        raise Failure(OP_FAILED, f'{what}: expected null or {{"by": n}}, got {json.dumps(value)}')
    return integer(value.get("by", 1), f"{what}.by")


class Counter:
    def __init__(self):
        self.initialized = False
        self.max_line_bytes = DEFAULT_MAX_LINE_BYTES
        self.max_checkpoint_bytes = DEFAULT_MAX_LINE_BYTES
        self.count = 0
        self.checkpointing = False
        self.checkpoint_due = False  # the count changed since the last state/checkpoint

    # -- the methods: each takes `params` and returns a result or raises Failure --

    def initialize(self, params):
        if self.initialized:
            raise Failure(INVALID_REQUEST, "initialize was already received")
        if not isinstance(params, dict):
            raise Failure(INVALID_PARAMS, "initialize expects an object")
        if params.get("protocolVersion") != PROTOCOL_VERSION:
            raise Failure(
                INVALID_PARAMS,
                f"unsupported protocolVersion {json.dumps(params.get('protocolVersion'))}: "
                f"this plugin speaks version {PROTOCOL_VERSION}",
            )
        # `config` is the entry's `config.settings` from the runtime's YAML ({} when absent).
        settings = params.get("config") or {}
        if not isinstance(settings, dict) or set(settings) - {"start", "checkpoint"}:
            expected = f'settings: expected {{"start": n, "checkpoint": bool}}, got {json.dumps(settings)}'
            raise Failure(INVALID_PARAMS, expected)
        self.count = integer(settings.get("start", 0), "settings.start", INVALID_PARAMS)
        self.checkpointing = settings.get("checkpoint") is True
        self.max_checkpoint_bytes = params.get("maxCheckpointBytes", DEFAULT_MAX_LINE_BYTES)
        max_line_bytes = params.get("maxLineBytes", DEFAULT_MAX_LINE_BYTES)
        if integer(max_line_bytes, "maxLineBytes", INVALID_PARAMS) < 1:
            raise Failure(INVALID_PARAMS, "maxLineBytes must be positive")
        self.max_line_bytes = max_line_bytes
        self.initialized = True
        name = os.environ.get("SWAPVISOR_PLUGIN", "?")
        log(f"{KIND} {VERSION} serving as {name}, count {self.count}")
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "kind": KIND,
            "version": VERSION,
            "ops": OPS,
            "stepTypes": STEP_TYPES,
        }

    def call(self, params):
        if not isinstance(params, dict) or not isinstance(params.get("op"), str):
            raise Failure(INVALID_PARAMS, 'call expects {"op": string, "args": value}')
        op, args = params["op"], params.get("args")
        if op == "increment":
            self.count += amount(args, "increment args")
        elif op == "get":
            pass
        elif op == "counter.add":
            # A step: args are {"config": <the step's config>, "input": <the pipeline's input>}.
            if not isinstance(args, dict):
                raise Failure(OP_FAILED, 'counter.add expects {"config": ..., "input": ...}')
            self.count += amount(args.get("config"), "counter.add config")
        else:
            known = ", ".join(OPS)
            raise Failure(OP_FAILED, f"unknown operation {json.dumps(op)} (operations: {known})")
        self.checkpoint_due = self.checkpointing and op != "get"
        return {"count": self.count}

    def state_export(self, params):
        # Sent on a reload once every call to this process has been answered.
        return {"count": self.count}

    def state_import(self, params):
        # Sent to the new process of a reload, after initialize and before any call. An error
        # refuses the state: the reload is rolled back and the old process keeps serving.
        state = params.get("state") if isinstance(params, dict) else None
        if not isinstance(state, dict) or "count" not in state:
            raise Failure(OP_FAILED, f'expected state {{"count": n}}, got {json.dumps(state)}')
        self.count = integer(state["count"], "state.count")
        return None

    def shutdown(self, params):
        return None

    METHODS = {
        "initialize": initialize,
        "call": call,
        "state/export": state_export,
        "state/import": state_import,
        "shutdown": shutdown,
    }

    # -- one request line in, one response out --

    def handle(self, line):
        """Answers one request line: returns (the response or None, whether to exit)."""
        try:
            request = json.loads(line)
        except ValueError as error:  # invalid JSON or invalid UTF-8
            return error_response(None, PARSE_ERROR, f"parse error: {error}"), False
        if not isinstance(request, dict):
            return error_response(None, INVALID_REQUEST, "not a JSON-RPC 2.0 request"), False
        rid, method = request.get("id"), request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return error_response(rid, INVALID_REQUEST, "not a JSON-RPC 2.0 request"), False
        if "id" not in request:
            # A notification: JSON-RPC never answers one. The runtime sends none; ignore them.
            return None, False
        if method != "initialize" and not self.initialized:
            return error_response(rid, INVALID_REQUEST, "initialize must come first"), False
        handler = self.METHODS.get(method)
        if handler is None:
            return error_response(rid, METHOD_NOT_FOUND, f"method not found: {method}"), False
        try:
            result = handler(self, request.get("params"))
        except Failure as failure:
            return error_response(rid, failure.code, failure.message), False
        except Exception as error:  # a bug: fail this request, keep serving
            return error_response(rid, INTERNAL_ERROR, f"internal error: {error!r}"), False
        # After answering shutdown the plugin exits (the runtime closes stdin next).
        return {"jsonrpc": "2.0", "id": rid, "result": result}, method == "shutdown"

    def checkpoint_line(self):
        """The state/checkpoint notification of the count, if one is due (else None).

        A notification has no "id" and gets no answer. It goes out just before the response to
        the call that changed the count, so the runtime holds the count before the caller hears
        of it: a crash restart, a revert or a restart of the runtime continues from there.
        """
        if not self.checkpoint_due:
            return None
        self.checkpoint_due = False
        notification = {"jsonrpc": "2.0", "method": "state/checkpoint",
                        "params": {"state": {"count": self.count}}}
        line = json.dumps(notification, separators=(",", ":"))
        if len(line) > min(self.max_line_bytes, self.max_checkpoint_bytes):
            log("the checkpoint is too large to send; the runtime keeps the previous one")
            return None
        return line

    def send(self, response):
        """Writes one response line and flushes it (the runtime waits for it)."""
        # ensure_ascii (the default) escapes non-ASCII, so len(line) is its length in bytes.
        line = json.dumps(response, separators=(",", ":"))
        if len(line) > self.max_line_bytes:  # never send a line the runtime must refuse
            message = "the answer is longer than maxLineBytes"
            too_long = error_response(response["id"], INTERNAL_ERROR, message)
            line = json.dumps(too_long, separators=(",", ":"))
        checkpoint = self.checkpoint_line()
        if checkpoint is not None:
            sys.stdout.write(checkpoint + "\n")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def error_response(rid, code, message):
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def main():
    counter = Counter()
    stdin = sys.stdin.buffer
    while True:
        # Read at most maxLineBytes + the newline, so an over-long line cannot exhaust memory.
        line = stdin.readline(counter.max_line_bytes + 1)
        if not line:
            break  # EOF on stdin means the same as shutdown
        if not line.endswith(b"\n") and len(line) > counter.max_line_bytes:
            while line and not line.endswith(b"\n"):  # skip the rest of the over-long line
                line = stdin.readline(65536)
            message = f"line longer than maxLineBytes ({counter.max_line_bytes})"
            counter.send(error_response(None, INVALID_REQUEST, message))
            continue
        if not line.strip():
            continue  # tolerate blank lines
        response, stop = counter.handle(line)
        if response is not None:
            counter.send(response)
        if stop:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
