"""Events out (issue 28, SPEC "Events"): an agent tells a local receiver
what its passes did: signed JSON webhooks, the exec hook, one event per
failure (not one per pass), its recovery once, and a dead sink that never
delays a pass nor the agent's stop. Receivers are Python servers on
127.0.0.1; every wait is bounded generously and only met on failure."""
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gwtest import GITWARD, pid_alive, proc_yaml, run, wait_for
from test_agent import AgentBase

NOTIFY_SECRET = b"notify-secret-\xc3\xa9-7f3a"
ENV_SECRET = "env-value-5b1d9c"  # a workload's env value: never in an event
URL_PASSWORD = "url-pw-c0ffee"  # a --notify URL's password: never logged
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Receiver:
    """Records every POST: (headers, body)."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, kind=None):
        with self.lock:
            evs = [(h, b, json.loads(b)) for h, b in self.requests]
        return [e for e in evs if kind is None or e[2]["event"] == kind]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class DeadSink:
    """Accepts connections, reads what comes and never answers; counts
    connections opened and closed by the client."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.opened = 0
        self.closed = 0
        self.on_open = []  # callbacks run when a connection is accepted
        self.on_close = []
        self.stopping = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.opened += 1
            for f in self.on_open:
                f()
            threading.Thread(target=self.hold, args=(c,), daemon=True).start()

    def hold(self, c):
        while True:
            try:
                if not c.recv(65536):
                    break
            except OSError:
                break
        c.close()
        self.closed += 1
        for f in self.on_close:
            f()

    def close(self):
        self.stopping = True
        self.sock.close()


class EventsBase(AgentBase):
    def setUp(self):
        super().setUp()
        self.secret_file = os.path.join(self.tmp, "notify.secret")
        with open(self.secret_file, "wb") as f:
            f.write(NOTIFY_SECRET + b"\n")
        self.rx = Receiver()

    def tearDown(self):
        super().tearDown()
        self.rx.close()

    def web_repo(self):
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600"),
                                           f"  env: {{TOKEN: {ENV_SECRET}}}\n"))
        r.commit("web")
        return r

    def metric(self, agent, series):
        _, body = self.http(agent, "/metrics")
        m = re.search("^" + re.escape(series) + r" (\S+)$", body, re.M)
        return float(m.group(1)) if m else None


class Webhook(EventsBase):
    def test_applied_event_is_signed_and_complete(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--label", "role=edge",
                       "--notify", self.rx.url, "--notify-secret-file", self.secret_file)
        h, body, ev = wait_for(lambda: self.rx.events("applied"), what="applied event")[0]
        self.assertEqual(h.get("Content-Type"), "application/json")
        want = "sha256=" + hmac.new(NOTIFY_SECRET, body, hashlib.sha256).hexdigest()
        self.assertEqual(h.get("X-Gitward-Signature-256"), want)
        state = self.state_json()
        self.assertEqual(ev["node"], "n1")
        self.assertEqual(ev["labels"], {"role": "edge"})
        self.assertEqual(ev["commit"], state["commit"])
        self.assertRegex(ev["commit"], "^[0-9a-f]{40}$")
        self.assertEqual(ev["ref"], "main")
        self.assertRegex(ev["time"], RFC3339_MS)
        self.assertEqual(ev["resources"], [{"kind": "Process", "name": "web", "action": "create",
                                            "state": "running", "health": "unknown"}])
        self.assertEqual(set(ev), {"event", "node", "labels", "commit", "ref", "time", "message", "resources"})
        self.assertNotIn(ENV_SECRET.encode(), body)
        self.assertNotIn(NOTIFY_SECRET, body)
        self.assertNotIn(NOTIFY_SECRET.decode(), self.log())
        wait_for(lambda: self.metric(a, 'gitward_notify_sent_total{sink="webhook"}') == 1, what="sent counted")

    def test_invalid_commit_told_once_recovery_once(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--notify", self.rx.url)
        wait_for(lambda: self.rx.events("applied"), what="applied event")
        r.write("apps/bad.yaml", "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: bad}\nspec: {nope: 1}\n")
        r.commit("broken")
        bad = r.git("rev-parse", "HEAD").strip()
        ev = wait_for(lambda: self.rx.events("invalid-commit"), what="invalid-commit event")[0][2]
        self.assertIn("apps/bad.yaml:4:7", ev["message"])
        self.assertEqual(ev["commit"], bad)  # the invalid commit, not the one kept in force
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 6, what="six more passes on the broken commit")
        self.assertEqual(len(self.rx.events("invalid-commit")), 1, [e[2]["event"] for e in self.rx.events()])
        r.remove("apps/bad.yaml")
        r.write("apps/api.yaml", proc_yaml("api", ("/bin/sleep", "3600")))
        r.commit("fixed")
        wait_for(lambda: len(self.rx.events("applied")) == 2, what="applied after the fix")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, what="four more passes after the fix")
        rec = self.rx.events("recovered")
        self.assertEqual(len(rec), 1, [e[2]["event"] for e in self.rx.events()])
        self.assertEqual(len(self.rx.events("invalid-commit")), 1)
        kinds = [e[2]["event"] for e in self.rx.events()]
        self.assertEqual(kinds, ["applied", "invalid-commit", "recovered", "applied"])


class Options(EventsBase):
    def test_bad_values_are_usage_errors(self):
        r = self.repo()
        for args, msg in ((["--notify", "ftp://u:pw-x@h/"], "gitward: --notify: expected an http:// or https:// URL\n"),
                          (["--notify-repeat", "0"],
                           'gitward: --notify-repeat: expected a duration of at least 1s like 1h, got "0"\n'),
                          (["--notify-exec", ""], "gitward: --notify-exec: must not be empty\n")):
            res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, *args],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(res.returncode, 64, res)
            self.assertTrue(res.stderr.startswith(msg), res.stderr)
            self.assertNotIn("pw-x", res.stderr)
        empty = os.path.join(self.tmp, "empty.secret")
        open(empty, "w").close()
        res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--listen", "off",
                              "--notify", self.rx.url, "--notify-secret-file", empty],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 1, res)
        self.assertEqual(res.stderr, f"gitward: error: --notify-secret-file {empty} is empty\n")

    def test_options_from_the_config_file(self):
        conf = os.path.join(self.tmp, "gitward.yaml")
        with open(conf, "w") as f:
            f.write(f"notify: [{self.rx.url}]\nnotify-secret-file: {self.secret_file}\nnotify-repeat: 2h\n")
        self.agent(self.web_repo(), "--path", "apps", "--interval", "1h", "--config", conf)
        h, body, _ = wait_for(lambda: self.rx.events("applied"), what="applied event")[0]
        want = "sha256=" + hmac.new(NOTIFY_SECRET, body, hashlib.sha256).hexdigest()
        self.assertEqual(h.get("X-Gitward-Signature-256"), want)


class Resources(EventsBase):
    def test_a_failed_resource_is_degraded_once_and_recovered_once(self):
        r = self.repo()
        r.write("apps/job.yaml", proc_yaml("job", ("/bin/sh", "-c", "exit 3"), "  restart: never\n"))
        r.commit("a job that fails")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--notify", self.rx.url)
        ev = wait_for(lambda: self.rx.events("degraded"), what="degraded event")[0][2]
        self.assertEqual([(x["kind"], x["name"], x["state"]) for x in ev["resources"]], [("Process", "job", "failed")])
        self.assertIn("Process/job is failed", ev["message"])
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 5, what="five more passes with the job failed")
        self.assertEqual(len(self.rx.events("degraded")), 1, [e[2]["event"] for e in self.rx.events()])
        r.write("apps/job.yaml", proc_yaml("job", ("/bin/sleep", "3600")))
        r.commit("a job that runs")
        rec = wait_for(lambda: self.rx.events("recovered"), what="recovered event")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, what="four more passes with the job running")
        # two conditions, each ended once: the job's, and the pass's "failed"
        # (it did not converge while the job was failed)
        kinds = [(e[2]["event"], e[2]["message"]) for e in self.rx.events()]
        # the job exits at once: the first pass may still have seen it
        # running (converged, applied) before it ended: the workload's race
        if kinds and kinds[0] == ("applied", ""):
            kinds = kinds[1:]
        self.assertEqual(kinds, [("failed", "not converged: Process/job"),
                                 ("degraded", "Process/job is failed: exited with status 3"),
                                 ("recovered", "failed ended"), ("applied", ""),
                                 ("recovered", "Process/job is running again")], kinds)
        rec = self.rx.events("recovered")[1][2]
        self.assertEqual([(x["name"], x["state"]) for x in rec["resources"]], [("job", "running")])


    def test_suspended_and_resumed_once_each(self):
        a = self.agent(self.web_repo(), "--path", "apps", "--interval", "1s", "--splay", "0",
                       "--notify", self.rx.url)
        wait_for(lambda: self.rx.events("applied"), what="applied event")
        self.assertEqual(run("suspend", "--reason", "disk swap", "--state-dir", self.state).rc, 0)
        ev = wait_for(lambda: self.rx.events("suspended"), what="suspended event")[0][2]
        self.assertEqual(ev["message"], "suspended (gitward suspend)")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 3, what="three passes while suspended")
        self.assertEqual(run("resume", "--state-dir", self.state).rc, 0)
        wait_for(lambda: self.rx.events("resumed"), what="resumed event")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 3, what="three passes after the resume")
        self.assertEqual([e[2]["event"] for e in self.rx.events()], ["applied", "suspended", "resumed"])


class ExecHook(EventsBase):
    def test_exec_hook_gets_event_on_stdin_and_env(self):
        out = os.path.join(self.tmp, "hook-out")
        os.mkdir(out)
        hook = os.path.join(self.tmp, "hook.sh")
        with open(hook, "w") as f:
            f.write(f"#!/bin/sh\ncat > {out}/stdin.$$\nenv > {out}/env.$$\nmv {out}/env.$$ {out}/done.$$\n")
        os.chmod(hook, 0o755)
        r = self.web_repo()
        os.environ["GITWARD_TEST_CANARY"] = ENV_SECRET  # the agent's environment is not the hook's
        try:
            self.agent(r, "--path", "apps", "--interval", "1h", "--notify-exec", hook)
        finally:
            del os.environ["GITWARD_TEST_CANARY"]
        done = wait_for(lambda: [n for n in os.listdir(out) if n.startswith("done.")], what="hook ran")[0]
        pid = done.split(".")[1]
        with open(os.path.join(out, "stdin." + pid), "rb") as f:
            body = f.read()
        with open(os.path.join(out, done)) as f:
            env = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
        ev = json.loads(body)
        self.assertEqual(ev["event"], "applied")
        self.assertEqual(env["GITWARD_EVENT"], "applied")
        self.assertEqual(env["GITWARD_NODE"], "n1")
        self.assertEqual(env["GITWARD_COMMIT"], self.state_json()["commit"])
        self.assertEqual(env["GITWARD_MESSAGE"], ev["message"])
        self.assertNotIn("GITWARD_TEST_CANARY", env)
        self.assertNotIn(ENV_SECRET, json.dumps(env))
        self.assertNotIn(ENV_SECRET.encode(), body)


    def test_a_hook_that_hangs_is_killed_and_never_holds_the_stop(self):
        pids = os.path.join(self.tmp, "hook-pids")
        hook = os.path.join(self.tmp, "hang.sh")
        with open(hook, "w") as f:  # its pid, then a sleep past every bound (exec: same pid)
            f.write(f"#!/bin/sh\necho $$ >> {pids}\nexec /bin/sleep 3600\n")
        os.chmod(hook, 0o755)
        a = self.agent(self.web_repo(), "--path", "apps", "--interval", "1h", "--notify-exec", hook)
        first = int(wait_for(lambda: os.path.exists(pids) and open(pids).read().split(), what="hook started")[0])
        # killed after 30 s, then tried again (bounded for a loaded machine)
        wait_for(lambda: not pid_alive(first), what="the hung hook killed")
        second = int(wait_for(lambda: (p := open(pids).read().split()) and len(p) > 1 and p, what="a second try")[1])
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=60), 0)
        wait_for(lambda: not pid_alive(second), timeout=30, what="the hook under way killed at the stop")


class DeadSinks(EventsBase):
    def test_dead_sink_never_delays_passes_nor_stop(self):
        dead = DeadSink()
        self.addCleanup(dead.close)
        r = self.web_repo()
        url = f"http://gw:{URL_PASSWORD}@127.0.0.1:{dead.port}/hook"
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--notify", url)
        marks = {}
        # passes counted when the first request came in and when the agent
        # gave up on it (10 s later): a pass waiting for the sink would count none
        dead.on_open.append(lambda: marks.setdefault("open", self.passes(a)))
        dead.on_close.append(lambda: marks.setdefault("close", self.passes(a)))
        if dead.opened:
            marks.setdefault("open", 1)
        wait_for(lambda: "close" in marks, what="the first request given up")
        print(f"\npasses while the first request hung: {marks['close'] - marks['open']}")
        # inline delivery would count none; one is the proof, and a loaded
        # machine may fit few passes in the 10 s window
        self.assertGreaterEqual(marks["close"] - marks["open"], 1, marks)
        # a request under way when SIGTERM comes: the agent still stops
        wait_for(lambda: dead.opened > dead.closed, what="a request under way")
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=60), 0)
        print(f"SIGTERM -> exit with a request under way: {time.monotonic() - t0:.2f}s")
        log = self.log()
        # the URL is named when a delivery fails, its password never
        self.assertRegex(log, r"event applied not delivered: POST http://\S*127\.0\.0\.1:%d/hook" % dead.port)
        self.assertNotIn(URL_PASSWORD, log)

    def test_full_queue_counts_drops(self):
        dead = DeadSink()
        self.addCleanup(dead.close)
        r = self.web_repo()
        r.write("apps/bad.yaml", "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: bad}\nspec: {nope: 1}\n")
        r.commit("broken")
        os.environ["GITWARD_NOTIFY_QUEUE"] = "2"
        try:
            # the same failure told again every second: events pile up behind the dead sink
            a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--notify-repeat", "1s",
                           "--notify", f"http://127.0.0.1:{dead.port}/hook")
        finally:
            del os.environ["GITWARD_NOTIFY_QUEUE"]
        wait_for(lambda: (self.metric(a, "gitward_notify_dropped_total") or 0) >= 2, what="drops counted")
        self.assertIn("events queue is full", self.log())


RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../contrib/notify/gitward-chat-relay")


class ChatRelay(EventsBase):
    """contrib/notify/gitward-chat-relay, the Slack/Teams recipe of contrib/docs/operations.md:
    the exec hook turns each event into {"text": ...} for a chat incoming
    webhook (here a local receiver standing in for Slack's)."""

    def test_the_recipe_posts_a_text_message_and_keeps_the_url_secret(self):
        chat = Receiver()
        self.addCleanup(chat.close)
        url_file = os.path.join(self.tmp, "chat-webhook-url")
        with open(url_file, "w") as f:
            f.write(chat.url + "?token=chat-" + URL_PASSWORD + "\n")
        os.chmod(url_file, 0o600)
        hook = os.path.join(self.tmp, "chat-hook")
        with open(hook, "w") as f:  # the two-line wrapper of operations.md
            f.write(f"#!/bin/sh\nexec {RELAY} {url_file}\n")
        os.chmod(hook, 0o755)
        a = self.agent(self.web_repo(), "--path", "apps", "--interval", "1h", "--notify-exec", hook)
        wait_for(lambda: chat.requests, what="a chat message")
        with chat.lock:
            headers, body = chat.requests[0]
        msg = json.loads(body)
        self.assertEqual(set(msg), {"text"})
        self.assertRegex(msg["text"], r"^✅ gitward applied on n1 at main [0-9a-f]{12}\n")
        self.assertIn("• Process/web: create, running", msg["text"])
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(self.metric(a, 'gitward_notify_failed_total{sink="exec"}') or 0, 0)
        self.assertNotIn(URL_PASSWORD, self.log())

    def test_the_recipe_fails_without_printing_the_url(self):
        url_file = os.path.join(self.tmp, "chat-webhook-url")
        with open(url_file, "w") as f:  # a closed port: nothing listens
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            f.write(f"http://127.0.0.1:{port}/services/T0/B0/{URL_PASSWORD}\n")
        r = subprocess.run([RELAY, url_file], input=b'{"event": "failed", "node": "n1", "message": "x"}',
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(b"cannot reach the chat server", r.stderr)
        self.assertNotIn(URL_PASSWORD.encode(), r.stderr + r.stdout)
        r = subprocess.run([RELAY, os.path.join(self.tmp, "missing")], input=b"{}", capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(b"cannot read the webhook URL file", r.stderr)
