"""Commit statuses on the forge (issue 28, --commit-status): an agent sets
pending when it starts applying a commit, then success or failure, context
gitward/n1, each once per commit, through each forge's documented request.
The forge is a Python server on 127.0.0.1 that checks nothing itself: it
records every request and the test checks method, path, headers and body.
Every wait is bounded generously and only met on failure."""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gwtest import GITWARD, proc_yaml, run, wait_for
from test_agent import AgentBase

TOKEN = "forge-token-9d2e71c4"  # never in a log line nor the status


class Forge:
    """Records every request: (method, path, headers, body); answers
    `code` (201 like the forges, or 500)."""

    def __init__(self, code=201):
        self.requests = []
        self.code = code
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(outer.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = do_GET = handle_any

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, sha=None):
        """[(state, request)] in the order received (for sha, or all)."""
        with self.lock:
            reqs = list(self.requests)
        out = []
        for r in reqs:
            if sha is None or r[1].endswith("/" + sha):
                out.append((json.loads(r[3])["state"], r))
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CommitStatusBase(AgentBase):
    def setUp(self):
        super().setUp()
        self.token_file = os.path.join(self.tmp, "forge.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.forge = Forge()
        self.addCleanup(self.forge.close)

    def forge_args(self, forge, api, repo):
        return ["--commit-status", forge, "--forge-api", api, "--forge-repo", repo,
                "--forge-token-file", self.token_file]

    def check_request(self, forge, req, path, state):
        method, got_path, headers, body = req
        self.assertEqual(method, "POST")
        self.assertEqual(got_path, path)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        doc = json.loads(body)
        if forge == "gitlab":
            self.assertEqual(headers.get("PRIVATE-TOKEN"), TOKEN)
            self.assertNotIn("Authorization", headers)
            self.assertEqual(set(doc), {"state", "name", "description"})
            self.assertEqual(doc["name"], "gitward/n1")
        else:
            want = f"token {TOKEN}" if forge == "gitea" else f"Bearer {TOKEN}"
            self.assertEqual(headers.get("Authorization"), want)
            self.assertEqual(set(doc), {"state", "context", "description"})
            self.assertEqual(doc["context"], "gitward/n1")
        if forge == "github":
            self.assertEqual(headers.get("Accept"), "application/vnd.github+json")
            self.assertEqual(headers.get("X-GitHub-Api-Version"), "2022-11-28")
        self.assertEqual(doc["state"], state)
        self.assertIsInstance(doc["description"], str)
        self.assertLessEqual(len(doc["description"]), 140)

    def secrets_kept(self, agent):
        self.assertNotIn(TOKEN, self.log())
        _, status = self.http(agent, "/status")
        self.assertNotIn(TOKEN, status)
        res = subprocess.run([GITWARD, "status", "--state-dir", self.state], capture_output=True, text=True,
                             timeout=60)
        self.assertNotIn(TOKEN, res.stdout + res.stderr)


class Forges(CommitStatusBase):
    def each_forge(self, forge, api_path, repo, path_of):
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        sha = r.commit("web")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0",
                       *self.forge_args(forge, self.forge.base + api_path, repo))
        got = wait_for(lambda: (s := self.forge.statuses(sha)) and len(s) >= 2 and s, what=f"{forge}: 2 statuses")
        self.assertEqual([s for s, _ in got[:2]], ["pending", "success"])
        for state, req in got[:2]:
            self.check_request(forge, req, path_of(sha), state)
        # more passes on the same commit: neither state is sent again
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, what="four more passes")
        self.assertEqual([s for s, _ in self.forge.statuses(sha)], ["pending", "success"])
        # a new commit gets its own pair
        r.write("apps/api.yaml", proc_yaml("api", ("/bin/sleep", "3600")))
        sha2 = r.commit("api")
        got = wait_for(lambda: (s := self.forge.statuses(sha2)) and len(s) >= 2 and s, what=f"{forge}: 2nd commit")
        self.assertEqual([s for s, _ in got], ["pending", "success"])
        self.check_request(forge, got[1][1], path_of(sha2), "success")
        self.assertEqual(len(self.forge.statuses()), 4)
        self.secrets_kept(a)

    def test_github(self):
        self.each_forge("github", "", "acme/site", lambda sha: f"/repos/acme/site/statuses/{sha}")

    def test_gitea(self):
        self.each_forge("gitea", "/api/v1/", "acme/site", lambda sha: f"/api/v1/repos/acme/site/statuses/{sha}")

    def test_gitlab(self):
        self.each_forge("gitlab", "/api/v4", "acme/site", lambda sha: f"/api/v4/projects/acme%2Fsite/statuses/{sha}")


class Failures(CommitStatusBase):
    def test_a_workload_that_exits_is_a_failure(self):
        r = self.repo()
        # a health check that never passes: the first pass's health gate
        # fails whether or not the job has exited yet (no race with it)
        r.write("apps/job.yaml", proc_yaml("job", ("/bin/sh", "-c", "exit 3"),
                                           "  restart: never\n  healthCheck:\n    exec: {command: [\"/bin/false\"]}\n"
                                           "    interval: 1s\n    timeout: 1s\n    retries: 1\n"))
        sha = r.commit("a job that fails")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0",
                       *self.forge_args("gitlab", self.forge.base, "42"))
        got = wait_for(lambda: (s := self.forge.statuses(sha)) and s[-1][0] == "failed" and s, what="pending, failed")
        # the job exits at once: the first pass may still have seen it
        # running (success) before it ended (the workload's race); then failed
        states = [s for s, _ in got]
        self.assertIn(states, (["pending", "failed"], ["pending", "success", "failed"]))
        self.check_request("gitlab", got[-1][1], f"/projects/42/statuses/{sha}", "failed")
        self.assertIn("job", json.loads(got[-1][1][3])["description"])
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, what="four more passes with the job failed")
        self.assertEqual([s for s, _ in self.forge.statuses(sha)], states)
        self.secrets_kept(a)

    def test_a_forge_answering_500_never_delays_passes(self):
        self.forge.code = 500
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        sha = r.commit("web")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0",
                       *self.forge_args("github", self.forge.base, "acme/site"))
        # pending tried 3 times, then success 3 times (1 s, 2 s apart): ~6 s
        # of tries, passes every second meanwhile; passes counted at the
        # first and the last try (a pass waiting on the forge would count none)
        first = wait_for(lambda: self.forge.statuses(sha) and self.passes(a), what="the first try")
        wait_for(lambda: len(self.forge.statuses(sha)) >= 6, what="every try of both statuses")
        last = self.passes(a)
        print(f"\npasses while the forge answered 500: {last - first}")
        self.assertGreaterEqual(last - first, 3)
        wait_for(lambda: "event commit-status not delivered" in self.log(), what="the failure logged")
        log = self.log()
        self.assertIn(f"POST {self.forge.base}/repos/acme/site/statuses/{sha}", log)
        self.assertIn("HTTP 500", log)
        self.assertEqual([s for s, _ in self.forge.statuses(sha)], ["pending"] * 3 + ["success"] * 3)
        wait_for(lambda: 'gitward_notify_failed_total{sink="commit-status"} 2' in self.http(a, "/metrics")[1],
                 what="both given up, counted")
        self.secrets_kept(a)

    def test_a_suspended_node_applies_nothing_and_sets_no_status(self):
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        sha = r.commit("web")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0",
                       *self.forge_args("github", self.forge.base, "acme/site"))
        wait_for(lambda: len(self.forge.statuses(sha)) >= 2, what="the first commit's statuses")
        self.assertEqual(run("suspend", "--reason", "disk swap", "--state-dir", self.state).rc, 0)
        r.write("apps/api.yaml", proc_yaml("api", ("/bin/sleep", "3600")))
        sha2 = r.commit("api")
        wait_for(lambda: self.state_json().get("remote_commit") == sha2 or self.passes(a) >= 12,
                 what="the new commit seen")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, what="four passes while suspended")
        self.assertEqual(self.forge.statuses(sha2), [])
        self.assertEqual(run("resume", "--state-dir", self.state).rc, 0)
        got = wait_for(lambda: (s := self.forge.statuses(sha2)) and len(s) >= 2 and s, what="statuses after resume")
        self.assertEqual([s for s, _ in got], ["pending", "success"])


class Options(CommitStatusBase):
    def test_the_four_go_together(self):
        r = self.repo()
        for args, missing in ((["--commit-status", "github"], "--forge-api, --forge-repo, --forge-token-file"),
                              (["--forge-api", "http://127.0.0.1:1", "--forge-repo", "a/b",
                                "--forge-token-file", self.token_file], "--commit-status")):
            res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, *args],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(res.returncode, 64, res)
            self.assertIn("missing " + missing + "\n", res.stderr)
        res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state,
                              *self.forge_args("bitbucket", "http://127.0.0.1:1", "a/b")],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 64, res)
        self.assertIn('--commit-status: expected github, gitlab or gitea, got "bitbucket"', res.stderr)

    def test_options_from_the_config_file(self):
        conf = os.path.join(self.tmp, "gitward.yaml")
        with open(conf, "w") as f:
            f.write(f"commit-status: gitea\nforge-api: {self.forge.base}\nforge-repo: acme/site\n"
                    f"forge-token-file: {self.token_file}\n")
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        sha = r.commit("web")
        self.agent(r, "--path", "apps", "--interval", "1h", "--config", conf)
        got = wait_for(lambda: (s := self.forge.statuses(sha)) and len(s) >= 2 and s, what="2 statuses")
        self.check_request("gitea", got[1][1], f"/repos/acme/site/statuses/{sha}", "success")
