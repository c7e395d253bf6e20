"""A FleetLock server (Zincati's protocol) on 127.0.0.1 for the e2e tests:
a counting semaphore of `slots` per group, owned by client id and
recursive (a holder asking again is granted; a steady-state by a holder
releases its slot, by anyone else is a no-op that succeeds). Requests
without the `fleet-lock-protocol: true` header, or not a POST, are refused
with the protocol's error document {"kind", "value"}. Every request is
recorded with its time for the tests' assertions. Modes: "normal",
"hang" (accepts the request and never answers), "error" (500 to all)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = {"/v1/pre-reboot": "pre-reboot", "/v1/steady-state": "steady-state"}


class FleetLockServer:
    def __init__(self, slots=1):
        self.slots = slots
        self.mode = "normal"
        self.mu = threading.Lock()
        self.holders = {}  # group -> [ids]
        self.log = []  # dicts: t, op, id, group, status
        self.release = threading.Event()  # ends the hung requests
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, status, doc):
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.answer(405, {"kind": "method_not_allowed", "value": "POST only"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(n, 65536)) if n else b""
                status, doc = server.handle(self.path, self.headers, raw)
                if status is None:  # hang: hold the connection until the test ends
                    server.release.wait(600)
                    return
                self.answer(status, doc)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, path, headers, raw):
        op = PATHS.get(path)
        rec = {"t": time.time(), "op": op or path, "id": None, "group": None, "status": None,
               "header": headers.get("fleet-lock-protocol")}
        try:
            if op is None:
                return self._done(rec, 404, {"kind": "not_found", "value": path})
            if headers.get("fleet-lock-protocol") != "true":
                return self._done(rec, 400, {"kind": "missing_header", "value": "fleet-lock-protocol: true"})
            try:
                params = json.loads(raw)["client_params"]
                rec["id"], rec["group"] = params["id"], params["group"]
                assert isinstance(rec["id"], str) and isinstance(rec["group"], str) and rec["id"]
            except (ValueError, KeyError, TypeError, AssertionError):
                return self._done(rec, 400, {"kind": "bad_request", "value": "client_params id and group"})
            if self.mode == "hang":
                return self._done(rec, None, None)
            if self.mode == "error":
                return self._done(rec, 500, {"kind": "internal_error", "value": "told to fail"})
            with self.mu:
                held = self.holders.setdefault(rec["group"], [])
                if op == "pre-reboot":
                    if rec["id"] in held:
                        return self._done(rec, 200, None)
                    if len(held) >= self.slots:
                        return self._done(rec, 409, {"kind": "failed_lock",
                                                     "value": f"semaphore full, held by {', '.join(held)}"})
                    held.append(rec["id"])
                    return self._done(rec, 200, None)
                if rec["id"] in held:
                    held.remove(rec["id"])
                return self._done(rec, 200, None)
        finally:
            with self.mu:
                self.log.append(rec)

    @staticmethod
    def _done(rec, status, doc):
        rec["status"] = status
        return status, doc

    def requests(self, op=None, node=None, status="any"):
        with self.mu:
            return [r for r in self.log if (op is None or r["op"] == op) and (node is None or r["id"] == node)
                    and (status == "any" or r["status"] == status)]

    def holding(self, group="default"):
        with self.mu:
            return list(self.holders.get(group, []))

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
