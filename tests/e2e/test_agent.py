"""End to end on the agent's front: webhooks as GitHub, GitLab and Gitea/Forgejo
send them, slow clients, SIGTERM during long waits, /healthz for a stuck pass,
/status over a corrupt state file."""
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time

from gwtest import agent_port, LISTEN_ANY, GITWARD, TempDirTest, pid_alive, proc_yaml, records, wait_for, stop

SECRET = b"hook-secret-\xc3\xa9-42"
SHA_A = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SHA_B = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


def github_push(added):
    """A push event as GitHub sends it (fields cut to a few of each kind)."""
    commit = {"id": SHA_B, "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433", "distinct": True,
              "message": f"add {added}", "timestamp": "2024-05-01T12:00:00+02:00",
              "url": f"https://github.com/ops/fleet/commit/{SHA_B}",
              "author": {"name": "Alice", "email": "alice@example.com", "username": "alice"},
              "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
              "added": [added], "removed": [], "modified": []}
    return {"ref": "refs/heads/main", "before": SHA_A, "after": SHA_B,
            "repository": {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "fleet",
                           "full_name": "ops/fleet", "private": True,
                           "owner": {"name": "ops", "email": None, "login": "ops", "id": 1},
                           "html_url": "https://github.com/ops/fleet",
                           "clone_url": "https://github.com/ops/fleet.git", "default_branch": "main",
                           "pushed_at": 1714557600, "master_branch": "main"},
            "pusher": {"name": "alice", "email": "alice@example.com"},
            "sender": {"login": "alice", "id": 583231, "type": "User", "site_admin": False},
            "created": False, "deleted": False, "forced": False, "base_ref": None,
            "compare": f"https://github.com/ops/fleet/compare/{SHA_A[:12]}...{SHA_B[:12]}",
            "commits": [commit], "head_commit": commit}


def gitlab_push(added):
    """A "Push Hook" as GitLab sends it."""
    return {"object_kind": "push", "event_name": "push", "before": SHA_A, "after": SHA_B,
            "ref": "refs/heads/main", "ref_protected": True, "checkout_sha": SHA_B, "message": None,
            "user_id": 4, "user_name": "John Smith", "user_username": "jsmith", "user_email": "",
            "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
            "project_id": 15,
            "project": {"id": 15, "name": "fleet", "description": "", "web_url": "https://gitlab.example.com/ops/fleet",
                        "avatar_url": None, "git_ssh_url": "git@gitlab.example.com:ops/fleet.git",
                        "git_http_url": "https://gitlab.example.com/ops/fleet.git", "namespace": "ops",
                        "visibility_level": 0, "path_with_namespace": "ops/fleet", "default_branch": "main",
                        "ci_config_path": None, "homepage": "https://gitlab.example.com/ops/fleet",
                        "url": "git@gitlab.example.com:ops/fleet.git",
                        "ssh_url": "git@gitlab.example.com:ops/fleet.git",
                        "http_url": "https://gitlab.example.com/ops/fleet.git"},
            "commits": [{"id": SHA_B, "message": f"add {added}\n", "title": f"add {added}",
                         "timestamp": "2024-05-01T12:00:00+02:00",
                         "url": f"https://gitlab.example.com/ops/fleet/-/commit/{SHA_B}",
                         "author": {"name": "John Smith", "email": "[REDACTED]"},
                         "added": [added], "modified": [], "removed": []}],
            "total_commits_count": 1, "push_options": {},
            "repository": {"name": "fleet", "url": "git@gitlab.example.com:ops/fleet.git", "description": "",
                           "homepage": "https://gitlab.example.com/ops/fleet",
                           "git_http_url": "https://gitlab.example.com/ops/fleet.git",
                           "git_ssh_url": "git@gitlab.example.com:ops/fleet.git", "visibility_level": 0}}


def gitea_push(added):
    """A push event as Gitea (and Forgejo) send it."""
    user = {"id": 1, "login": "ops", "login_name": "", "full_name": "", "email": "ops@example.com",
            "avatar_url": "https://gitea.example.com/avatars/1", "language": "", "is_admin": False,
            "last_login": "0001-01-01T00:00:00Z", "created": "2024-01-01T00:00:00Z", "restricted": False,
            "active": False, "prohibit_login": False, "location": "", "website": "", "description": "",
            "visibility": "public", "followers_count": 0, "following_count": 0, "starred_repos_count": 0,
            "username": "ops"}
    commit = {"id": SHA_B, "message": f"add {added}\n", "url": f"https://gitea.example.com/ops/fleet/commit/{SHA_B}",
              "author": {"name": "ops", "email": "ops@example.com", "username": "ops"},
              "committer": {"name": "ops", "email": "ops@example.com", "username": "ops"},
              "verification": None, "timestamp": "2024-05-01T12:00:00+02:00",
              "added": [added], "removed": [], "modified": []}
    return {"ref": "refs/heads/main", "before": SHA_A, "after": SHA_B,
            "compare_url": f"https://gitea.example.com/ops/fleet/compare/{SHA_A}...{SHA_B}",
            "commits": [commit], "total_commits": 1, "head_commit": commit,
            "repository": {"id": 1, "owner": user, "name": "fleet", "full_name": "ops/fleet", "description": "",
                           "empty": False, "private": False, "fork": False, "template": False, "parent": None,
                           "mirror": False, "size": 24, "html_url": "https://gitea.example.com/ops/fleet",
                           "ssh_url": "git@gitea.example.com:ops/fleet.git",
                           "clone_url": "https://gitea.example.com/ops/fleet.git", "default_branch": "main"},
            "pusher": user, "sender": user}


def hexmac(body, key=SECRET):
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def github_headers(body, key=SECRET):
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/4d63832",
            "X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hexmac(body, key)}


def gitlab_headers(token=SECRET):
    return {"Content-Type": "application/json", "User-Agent": "GitLab/16.11.1", "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Instance": "https://gitlab.example.com", "X-Gitlab-Token": token.decode("latin-1"),
            "X-Gitlab-Webhook-UUID": "16b8ed2b-14c9-4b20-a0e3-2e7a3b6f7a48",
            "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e"}


def gitea_headers(body, key=SECRET):
    """Gitea sends its own signature and GitHub's and Gogs' beside it."""
    mac = hexmac(body, key)
    return {"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1",
            "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473", "X-Gitea-Event": "push",
            "X-Gitea-Event-Type": "push", "X-Gitea-Signature": mac, "X-Gogs-Delivery":
            "f6266f16-1bf3-46a5-9ea4-602e06ead473", "X-Gogs-Event": "push", "X-Gogs-Event-Type": "push",
            "X-Gogs-Signature": mac, "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + mac, "X-GitHub-Event": "push", "X-GitHub-Event-Type": "push"}


def forgejo_headers(body, key=SECRET):
    return {"Content-Type": "application/json", "X-Forgejo-Event": "push", "X-Forgejo-Event-Type": "push",
            "X-Forgejo-Delivery": "2c2b6e62-2f0e-4a57-8f35-7dfa7fd1b1b5", "X-Forgejo-Signature": hexmac(body, key)}


class AgentBase(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def agent(self, repo, *args, state=None):
        self.log_path = os.path.join(self.tmp, "agent.log")
        with open(self.log_path, "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo.path, "--state-dir", state or self.state,
                                  "--node", "n1", "--listen", LISTEN_ANY, *args],
                                 stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(p)
        p.port = agent_port(p, self.log_path)
        wait_for(lambda: self.http(p, "/healthz") == (200, "ok\n"), what="agent endpoints")
        return p

    def http(self, agent, path, data=None, headers=None, source="127.0.0.1", timeout=30):
        """(status, body) or (None, "") when the endpoint does not answer
        within timeout: the bound is here, in the harness."""
        c = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=timeout, source_address=(source, 0))
        try:
            c.request("POST" if data is not None else "GET", path, body=data, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read().decode()
        except OSError:
            return None, ""
        finally:
            c.close()

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def pids(self):
        return {n: r["pid"] for n, r in records(self.state).items()}

    def passes(self, agent):
        _, body = self.http(agent, "/metrics")
        return sum(int(n) for n in re.findall(r'^gitward_sync_total\{result="[a-z_]+"\} (\d+)$', body, re.M))

    def state_json(self):
        with open(os.path.join(self.state, "state.json")) as f:
            return json.load(f)


class Webhooks(AgentBase):
    def setUp(self):
        super().setUp()
        self.secret = os.path.join(self.tmp, "hook.secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET + b"\n")
        self.r = self.repo()
        self.r.write("a.yaml", proc_yaml("a"))
        self.r.commit()
        self.a = self.agent(self.r, "--interval", "1h", "--webhook-secret-file", self.secret)
        wait_for(lambda: "a" in self.pids(), what="first apply")

    def post(self, body, headers):
        return self.http(self.a, "/hooks/git", data=body, headers=headers)

    def refused_then_accepted(self, name, refused, accepted):
        """A commit made after the start is applied right after the signed
        hook, not after a refused one (the interval is an hour)."""
        self.r.write(f"{name}.yaml", proc_yaml(name))
        self.r.commit(f"add {name}")
        before = self.passes(self.a)
        for body, headers, want in refused:
            self.assertEqual(self.post(body, headers), (want[0], want[1]), headers)
        self.assertEqual(self.passes(self.a), before)
        self.assertNotIn(name, self.pids())
        body, headers = accepted
        self.assertEqual(self.post(body, headers), (202, "pass triggered\n"))
        wait_for(lambda: name in self.pids() and pid_alive(self.pids()[name]), timeout=60, what=f"pass for {name}")
        # the workload runs before its pass ends and is counted
        wait_for(lambda: self.passes(self.a) > before, timeout=60, what="the pass counted")

    def test_github_push_event_with_x_hub_signature_256(self):
        body = json.dumps(github_push("b.yaml")).encode()
        self.refused_then_accepted("b", [
            (body, github_headers(body, key=b"wrong"), (401, "bad signature\n")),
            (body, {**github_headers(body), "X-Hub-Signature-256": hexmac(body)}, (401, "bad signature\n")),
            (body + b" ", github_headers(body), (401, "bad signature\n")),
            (body, {"X-GitHub-Event": "push", "Content-Type": "application/json"}, (401, "missing signature\n")),
        ], (body, github_headers(body)))
        self.assertIn("webhook from github (push): pass requested", self.log())

    def test_gitlab_push_hook_with_x_gitlab_token(self):
        body = json.dumps(gitlab_push("c.yaml")).encode()
        same_length = bytes([SECRET[0] ^ 1]) + SECRET[1:]
        self.refused_then_accepted("c", [
            (body, gitlab_headers(token=same_length), (401, "bad signature\n")),
            (body, gitlab_headers(token=SECRET[:-1]), (401, "bad signature\n")),
            (body, gitlab_headers(token=SECRET + b"x"), (401, "bad signature\n")),
            (body, {**gitlab_headers(), "X-Gitlab-Token": ""}, (401, "bad signature\n")),
        ], (body, gitlab_headers()))
        self.assertIn("webhook from gitlab (Push Hook): pass requested", self.log())

    def test_gitea_and_forgejo_push_with_their_signature_headers(self):
        body = json.dumps(gitea_push("d.yaml")).encode()
        wrong_gitea = {**gitea_headers(body), "X-Gitea-Signature": hexmac(body, b"wrong")}
        self.refused_then_accepted("d", [
            (body, gitea_headers(body, key=b"wrong"), (401, "bad signature\n")),
            # every signature sent must hold, not just GitHub's
            (body, wrong_gitea, (401, "bad signature\n")),
        ], (body, gitea_headers(body)))
        self.assertIn("webhook from gitea (push): pass requested", self.log())
        body = json.dumps(gitea_push("e.yaml")).encode()
        self.refused_then_accepted("e", [(body, forgejo_headers(body, key=b"wrong"), (401, "bad signature\n"))],
                                   (body, {**forgejo_headers(body),
                                           "X-Forgejo-Signature": hexmac(body).upper()}))

    def test_body_over_the_limit_is_413_and_requests_are_counted(self):
        big = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (1 << 20) + b'"}'
        self.assertEqual(self.post(big, github_headers(big)), (413, "body too large\n"))
        # without Content-Length (chunked): read, dropped, refused the same
        chunks = [big[i:i + 65536] for i in range(0, len(big), 65536)]
        c = http.client.HTTPConnection("127.0.0.1", self.a.port, timeout=10)
        c.request("POST", "/hooks/git", body=iter(chunks), headers=github_headers(big), encode_chunked=True)
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (413, b"body too large\n"))
        c.close()
        # a client that waits for "100 Continue" is refused before it sends
        with socket.create_connection(("127.0.0.1", self.a.port), timeout=10) as s:
            s.sendall(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(big))
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)
        self.assertTrue(reply.endswith(b"\r\n\r\nbody too large\n"), reply)
        body = json.dumps(gitlab_push("f.yaml")).encode()
        self.assertEqual(self.post(body, gitlab_headers(token=b"nope"))[0], 401)
        self.assertEqual(self.post(body, gitlab_headers())[0], 202)
        self.assertEqual(self.http(self.a, "/hooks/git")[0], 405)
        _, m = self.http(self.a, "/metrics")
        self.assertIn('gitward_webhook_requests_total{source="github",result="too_large"} 2\n', m)
        self.assertIn('gitward_webhook_requests_total{source="none",result="too_large"} 1\n', m)
        self.assertIn('gitward_webhook_requests_total{source="gitlab",result="unauthorized"} 1\n', m)
        self.assertIn('gitward_webhook_requests_total{source="gitlab",result="accepted"} 1\n', m)
        self.assertIn('gitward_webhook_requests_total{source="github",result="accepted"} 0\n', m)


    def test_a_flood_of_forged_hooks_is_counted_each_and_logged_a_few_times(self):
        body = json.dumps(github_push("g.yaml")).encode()
        headers = github_headers(body, key=b"wrong")
        # one keep-alive connection: 3,000 requests, each refused
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.a.port, timeout=60)
        try:
            for i in range(3000):
                c.request("POST", "/hooks/git", body=body, headers=headers)
                r = c.getresponse()
                self.assertEqual((r.status, r.read()), (401, b"bad signature\n"), i)
        finally:
            c.close()
        took = time.monotonic() - t0
        # every one counted (summed over the sources the forged headers name)
        metric = re.compile(r'^gitward_webhook_requests_total\{source="[a-z]+",result="unauthorized"\} (\d+)$', re.M)
        wait_for(lambda: sum(int(n) for n in metric.findall(self.http(self.a, "/metrics")[1])) == 3000,
                 what="3000 refusals counted")
        # one warning per 10 s at most: the first, then one per period the
        # flood lasted (a loaded machine stretches it), never one per request
        lines = [ln for ln in self.log().splitlines() if "webhook refused: the signature" in ln]
        self.assertGreaterEqual(len(lines), 1)
        self.assertLessEqual(len(lines), 2 + int(took / 10), (took, lines))
        self.assertLess(len(lines), 100)


class SlowClients(AgentBase):
    def setUp(self):
        super().setUp()
        # ~700 sockets here, 512 in the agent (it inherits the limit)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        self.assertGreaterEqual(want, 2048, "RLIMIT_NOFILE hard limit too low for this test")
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        secret = os.path.join(self.tmp, "hook.secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        # the header deadline is the HeaderDeadline tests': here the sockets
        # must stay held however long a loaded machine takes to open them
        self.a = self.agent(r, "--interval", "1h", "--webhook-secret-file", secret, "--header-timeout", "1h")

    def trickling(self, sources, probe):
        """Sockets that each send a request line, then one header line every
        2 s (so none idles out), never the end, (source, count) of them; the
        trickle starts with the first, so a slow opening idles none out.
        Then probe() runs at least 6 rounds over at least 9 s: by then a
        refused socket has failed a send. Returns the sockets, [source,
        socket, held] each, and the held count by source."""
        slow = []
        stop = threading.Event()

        def trickle():
            k = 0
            while not stop.wait(2):
                k += 1
                for entry in list(slow):
                    try:
                        entry[1].sendall(b"X-Slow-%d: 1\r\n" % k)
                    except OSError:
                        entry[2] = False

        t = threading.Thread(target=trickle)
        t.start()
        try:
            for src, n in sources:
                for _ in range(n):
                    s = socket.socket()
                    s.settimeout(30)  # a connect the busy agent accepts late is no failure
                    s.bind((src, 0))
                    entry = [src, s, True]
                    try:
                        s.connect(("127.0.0.1", self.a.port))
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    except OSError:
                        entry[2] = False
                    slow.append(entry)
            t0 = time.monotonic()
            rounds = 0
            while rounds < 6 or time.monotonic() - t0 < 9:
                self.assertLess(time.monotonic() - t0, 300, f"round {rounds}")
                probe(rounds)
                rounds += 1
                time.sleep(0.5)
        except BaseException:
            for _, s, _ in slow:
                s.close()
            raise
        finally:
            stop.set()
            t.join()
        held = {}
        for src, _, alive in slow:
            held[src] = held.get(src, 0) + alive
        return slow, held

    def closed_by_the_agent(self, slow):
        """Every held socket, now quiet, is closed by the agent (idle
        timeout, 10 s, or header deadline, 30 s): EOF or a reset, within a
        generous bound."""
        deadline = time.monotonic() + 120
        for src, s, alive in slow:
            if alive:
                s.settimeout(max(1.0, deadline - time.monotonic()))
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                except socket.timeout:
                    self.fail(f"a quiet socket from {src} still open after 120 s")
            s.close()

    def test_trickling_addresses_leave_healthz_and_metrics_to_the_hosts_own_share(self):
        a = self.a
        body = json.dumps(github_push("a.yaml")).encode()

        def probe(rounds):
            # each request bounded by its own timeout: the trickled sockets
            # never idle out, so an endpoint they held would never answer
            self.assertEqual(self.http(a, "/healthz", timeout=30), (200, "ok\n"), f"round {rounds}")
            status, m = self.http(a, "/metrics", timeout=30)
            self.assertEqual(status, 200, f"round {rounds}")
            self.assertIn("gitward_webhook_requests_total", m)
            self.assertEqual(self.http(a, "/hooks/git", data=body, headers=github_headers(body), timeout=30)[0],
                             202)

        # 40 sockets from 127.0.0.2, 16 from each of 38 more addresses: 648,
        # more than the 512 the agent serves at once; the probes come from
        # 127.0.0.1
        slow, held = self.trickling([("127.0.0.2", 40)] + [(f"127.0.0.{i}", 16) for i in range(3, 41)], probe)
        # one address holds 16 at most, all but 127.0.0.1 together 480:
        # 127.0.0.1's 32 stay free
        self.assertEqual(held["127.0.0.2"], 16)
        self.assertTrue(all(n <= 16 for n in held.values()), held)
        self.assertEqual(sum(held.values()), 480, held)
        self.closed_by_the_agent(slow)
        self.assertEqual(a.poll(), None)

    def test_the_hosts_own_address_never_holds_every_connection(self):
        a = self.a

        def probe(rounds):
            self.assertEqual(self.http(a, "/healthz", source="127.0.0.41", timeout=30), (200, "ok\n"),
                             f"round {rounds}")

        # a local client trickling from 127.0.0.1 holds its 32, no more;
        # other addresses are still answered
        slow, held = self.trickling([("127.0.0.1", 100)], probe)
        self.assertEqual(held["127.0.0.1"], 32)
        self.closed_by_the_agent(slow)
        # its share is back once they are closed
        wait_for(lambda: self.http(a, "/healthz") == (200, "ok\n"), what="127.0.0.1 answered again")
        self.assertEqual(a.poll(), None)


class HeaderDeadline(AgentBase):
    """Request headers have HEADER_DEADLINE s in all from the connection's
    start (agent/http.c), whatever the pace of their bytes; a body after
    prompt headers only the idle rule (IDLE s without a byte)."""
    HEADER_DEADLINE = 5  # --header-timeout, below the idle rule so a body outlives it
    IDLE = 10

    def setUp(self):
        super().setUp()
        secret = os.path.join(self.tmp, "hook.secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        self.a = self.agent(r, "--interval", "1h", "--webhook-secret-file", secret, "--header-timeout", "%ds" % self.HEADER_DEADLINE)

    def test_a_client_trickling_its_headers_is_cut_though_never_idle(self):
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.2", 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", self.a.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = last = time.monotonic()
        gap = 0.0
        closed = False
        # one header byte every 2 s (the recv's timeout paces it), never a
        # pause the idle timeout would close
        while not closed:
            self.assertLess(time.monotonic() - t0, 120, "a trickling client still connected after 120 s")
            try:
                s.settimeout(2)
                closed = s.recv(4096) == b""
                self.assertTrue(closed, "an answer before the headers' end")
            except socket.timeout:
                now = time.monotonic()
                gap = max(gap, now - last)
                last = now
                try:
                    s.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
            except ConnectionResetError:
                closed = True
        # the cut came from the deadline: no pause was long enough to idle out
        self.assertLess(gap, self.IDLE, "the client paused long enough for the idle timeout")
        # the address is served again, the agent is still up
        self.assertEqual(self.http(self.a, "/healthz", source="127.0.0.2"), (200, "ok\n"))
        self.assertIsNone(self.a.poll())
        # SIGTERM with a connection awaiting its headers: the sweeper stops,
        # a clean exit (an ASan build would report a leak or a race here)
        s2 = socket.socket()
        self.addCleanup(s2.close)
        s2.bind(("127.0.0.2", 0))
        s2.settimeout(30)
        s2.connect(("127.0.0.1", self.a.port))
        s2.sendall(b"GET /healthz HTTP/1.1\r\n")
        self.a.send_signal(signal.SIGTERM)
        self.assertEqual(self.a.wait(timeout=120), 0, self.log())
        self.assertNotIn("Sanitizer", self.log())

    def test_a_slow_body_after_prompt_headers_is_held_to_the_idle_rule_only(self):
        body = json.dumps(github_push("a.yaml")).encode()
        head = b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
        head += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in github_headers(body).items())
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.2", 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", self.a.port))
        t0 = time.monotonic()
        s.sendall(head + b"\r\n")
        # one body byte every 2 s until well past the header deadline
        sent = 0
        while time.monotonic() - t0 < self.HEADER_DEADLINE + 15:
            self.assertLess(sent, len(body) - 1, "body too short to outlast the deadline")
            s.sendall(body[sent:sent + 1])
            sent += 1
            time.sleep(2)
        s.sendall(body[sent:])
        s.settimeout(60)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            self.assertNotEqual(chunk, b"", f"closed before the answer, after {sent} body bytes")
            reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 202"), reply)


class Stopping(AgentBase):
    NEVER_HEALTHY = ("  healthCheck:\n    exec: {command: [\"/bin/false\"]}\n"
                     "    interval: 5s\n    retries: 100\n")

    def stop_within(self, a, seconds):
        """SIGTERM ends the agent within seconds, where the wait it is in
        would last minutes or an hour: the callers' bound is that gap, wide
        enough for a loaded ASan build."""
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0, self.log())
        took = time.monotonic() - t0
        self.assertLess(took, seconds, self.log())
        return took

    def test_sigterm_during_a_health_wait_stops_within_seconds(self):
        r = self.repo()
        probed = os.path.join(self.tmp, "probed")
        # never healthy; each probe leaves a mark, so the test knows the health wait runs
        r.write("a.yaml", proc_yaml("a", extra="  healthCheck:\n"
                                               f"    exec: {{command: [/bin/sh, -c, \"echo >> {probed}; exit 1\"]}}\n"
                                               "    interval: 5s\n    retries: 100\n"))
        r.commit()
        a = self.agent(r, "--interval", "1h")
        wait_for(lambda: "a" in self.pids(), what="the start")
        pid = self.pids()["a"]
        wait_for(lambda: os.path.exists(probed), what="the first probe of the health wait (up to 500 s)")
        self.assertNotIn("pass done", self.log())
        self.stop_within(a, 60)  # the health wait lasts 300 s (its cap)
        self.assertTrue(pid_alive(pid))
        st = self.state_json()
        self.assertEqual([(x["name"], x["pid"], x["state"]) for x in st["resources"]], [("a", pid, "running")])
        self.assertIn("Process/a: started; not yet healthy when the agent stopped", self.log())
        self.assertIn("agent stopping; workloads keep running", self.log())

    def test_sigterm_during_a_long_stop_timeout_leaves_the_old_workload_recorded(self):
        r = self.repo()
        termed = os.path.join(self.tmp, "termed")
        # survives TERM, and says it got it
        stubborn = ("/bin/sh", "-c", f"trap 'echo TERM >> {termed}' TERM; while :; do sleep 0.2; done")
        r.write("a.yaml", proc_yaml("a", command=stubborn, extra="  env: {V: \"1\"}\n  stopTimeout: 1h\n"))
        r.write("b.yaml", proc_yaml("b"))
        r.commit()
        a = self.agent(r, "--interval", "1h")
        wait_for(lambda: "a" in self.pids() and "b" in self.pids(), what="the start")
        old = self.pids()["a"]
        # a changed a, a new c after it (dependsOn): a stays in its stop timeout
        r.write("a.yaml", proc_yaml("a", command=stubborn, extra="  env: {V: \"2\"}\n  stopTimeout: 1h\n"))
        r.write("c.yaml", proc_yaml("c", extra="  dependsOn: [a]\n"))
        r.commit()
        a.send_signal(signal.SIGHUP)
        wait_for(lambda: f"Process/a: update: stopping pid {old}\n" in self.log(), timeout=60, what="the update")
        wait_for(lambda: os.path.exists(termed), what="the SIGTERM of the stop, whose timeout is an hour")
        self.stop_within(a, 60)  # the stop timeout is an hour
        self.assertTrue(pid_alive(old))
        self.assertEqual(self.pids()["a"], old)
        st = {x["name"]: x for x in self.state_json()["resources"]}
        self.assertEqual((st["a"]["pid"], st["a"]["state"]), (old, "running"))
        self.assertEqual(st["b"]["state"], "running")
        self.assertNotIn("c", self.pids())
        self.assertIn("stop of pid %d abandoned: the agent is stopping" % old, self.log())
        self.assertNotIn("killing", self.log())

    def test_healthz_is_503_while_a_pass_runs_past_stuck_after(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra=self.NEVER_HEALTHY))
        r.commit()
        a = self.agent(r, "--interval", "1h", "--stuck-after", "2s")
        code, body = wait_for(lambda: (lambda c: c if c[0] == 503 else None)(self.http(a, "/healthz")),
                              timeout=120, what="503")
        # 2 s or more: a loaded machine may see the 503 late
        self.assertRegex(body, r"^pass stuck: running for ([2-9]|[1-9][0-9]+)s, over --stuck-after 2s\n$")
        _, m = self.http(a, "/metrics")
        self.assertRegex(m, r"\ngitward_pass_running_seconds [1-9][0-9]*\.[0-9]{3}\n")
        self.stop_within(a, 60)  # the health wait lasts 300 s (its cap)

    def test_stuck_after_is_checked(self):
        r = self.repo()
        res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--stuck-after", "soon"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(res.returncode, 64)
        self.assertIn('--stuck-after: expected a duration of at least 1s like 15m, got "soon"', res.stderr)

    def test_header_timeout_is_checked(self):
        r = self.repo()
        for bad in ("soon", "500ms", "2h"):
            res = subprocess.run([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--header-timeout",
                                  bad], capture_output=True, text=True, timeout=30)
            self.assertEqual(res.returncode, 64, res)
            self.assertIn(f'--header-timeout: expected a duration from 1s to 1h like 30s, got "{bad}"', res.stderr)


class FetchUnderLoad(AgentBase):
    # probed at every pass: a timeout (at most the interval) a loaded ASan
    # build cannot trip, or three slow spawns of /bin/true fail a pass
    HEALTHY = "  healthCheck:\n    exec: {command: [\"/bin/true\"]}\n    interval: 10s\n    timeout: 10s\n"

    def test_many_passes_fetch_while_the_other_threads_allocate(self):
        """Every pass fetches in a fresh process while the agent's other
        threads allocate (four clients on /metrics and /healthz):
        a fork of the threaded agent that ran libgit2 could hang on an
        allocator lock held by another thread (seen under ASan) and time the
        fetch out. Bounded here: 40 passes, all of them successful."""
        r = self.repo()
        for n in "abcd":
            r.write(f"{n}.yaml", proc_yaml(n, extra=self.HEALTHY))
        r.commit()
        a = self.agent(r, "--interval", "100ms")
        done = threading.Event()

        def hammer():
            # from 127.0.0.2, paced: the clients' closed connections stay
            # out of the way of the next tests' connects from 127.0.0.1
            while not done.wait(0.01):
                self.http(a, "/metrics", source="127.0.0.2")
                self.http(a, "/healthz", source="127.0.0.2")
        clients = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for c in clients:
            c.start()
        try:
            wait_for(lambda: self.passes(a) >= 40 or a.poll() is not None, timeout=240, step=0.5,
                     what="40 passes")
        finally:
            done.set()
            for c in clients:
                c.join(timeout=30)
        self.assertIsNone(a.poll(), self.log())
        _, body = self.http(a, "/metrics")
        results = dict(re.findall(r'^gitward_sync_total\{result="([a-z_]+)"\} (\d+)$', body, re.M))
        self.assertGreaterEqual(int(results.get("success", 0)), 40, results)
        self.assertEqual([k for k, v in results.items() if k != "success" and int(v)], [], results)
        self.assertNotIn("timed out", self.log())
        self.assertEqual(sorted(self.pids()), ["a", "b", "c", "d"])

class Status(AgentBase):
    def test_status_over_a_corrupt_state_file_is_a_json_error(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        # a state dir whose path needs escaping in JSON
        self.state = os.path.join(self.tmp, 'st"a\\te\tx')
        a = self.agent(r, "--interval", "1h")
        wait_for(lambda: "a" in self.pids(), what="first apply")
        # the pass ends by writing state.json: corrupt it only after that
        wait_for(lambda: 'gitward_sync_total{result="success"} 1\n' in self.http(a, "/metrics")[1],
                 what="first pass recorded")
        path = os.path.join(self.state, "state.json")
        with open(path, "w") as f:
            f.write('{"node": "n1", "resources": [{"name": "a\\"')
        code, body = self.http(a, "/status")
        self.assertEqual(code, 500, body)
        doc = json.loads(body)
        self.assertEqual(doc["state_file"], path)
        self.assertIn(path, doc["error"])
        code, body = self.http(a, "/metrics")
        self.assertEqual(code, 200)
        self.assertIn('gitward_sync_total{result="success"} 1\n', body)
