"""End to end on /metrics: the text passes `promtool check metrics`, and the
series follow what happens on the node (a killed workload, a failing health
check, a repository gone away). One test has a real Prometheus scrape an
agent and finds its series through the query API."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.parse

from gwtest import (agent_port, LISTEN_ANY, GITWARD, TempDirTest, pid_alive, proc_yaml, records, retry_port, run,
                    stop, wait_for)

# Under CI (any non-empty value) a missing promtool or prometheus fails.
CI = bool(os.environ.get("CI"))
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK)
                                            else None)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$')


def need(tool, name):
    if tool:
        return tool
    if CI:
        raise AssertionError(f"{name} is not installed (Debian package prometheus); CI needs it")
    raise unittest.SkipTest(f"{name} is not installed (Debian package prometheus)")


def parse(body):
    """series as printed ('name{labels}') -> value"""
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def gitward_version():
    r = subprocess.run([GITWARD, "version"], capture_output=True, text=True, timeout=30)
    return r.stdout.split()[1]


class MetricsBase(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        codes = []
        for a in self.agents:
            if a.poll() is None:
                a.send_signal(signal.SIGTERM)
                try:
                    a.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    a.kill()
                    a.wait(timeout=10)
            codes.append(a.returncode)
        log = self.log() if self.agents else ""
        super().tearDown()
        # a clean stop (and, under the sanitizers, no report)
        self.assertEqual(codes, [0] * len(codes), log[-3000:])

    def agent(self, repo_path, *args):
        self.log_path = os.path.join(self.tmp, "agent.log")
        with open(self.log_path, "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo_path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", LISTEN_ANY, *args], stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(p)
        p.port = agent_port(p, self.log_path)
        wait_for(lambda: self.get(p, "/healthz")[0] == 200, what="agent endpoints")
        return p

    def get(self, agent, path):
        """(status, content type, body); (None, None, "") if it does not answer"""
        c = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode()
        except OSError:
            return None, None, ""
        finally:
            c.close()

    def metrics(self, agent):
        code, _, body = self.get(agent, "/metrics")
        self.assertEqual(code, 200, body)
        return parse(body)

    def wait_metric(self, agent, series, pred, what, timeout=120):
        return wait_for(lambda: (lambda m: m if series in m and pred(m[series]) else None)(self.metrics(agent)),
                        timeout=timeout, what=f"{what} ({series})")

    def log(self):
        with open(self.log_path) as f:
            return f.read()


def promtool_check(body):
    r = subprocess.run([need(PROMTOOL, "promtool"), "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


CONV = 'gitward_resource_converged{kind="Process",name="%s"}'
RESTARTS = 'gitward_resource_restarts_total{kind="Process",name="%s"}'
FETCH_ERRORS = "gitward_git_fetch_errors_total"
FETCH_OK = "gitward_git_last_fetch_success_timestamp_seconds"
SUCCESS = "gitward_last_success_timestamp_seconds"
ATTEMPT = "gitward_last_attempt_timestamp_seconds"


class Conventions(MetricsBase):
    def test_metrics_pass_promtool_and_follow_restarts_and_health(self):
        need(PROMTOOL, "promtool")
        flag = os.path.join(self.tmp, "healthy")
        open(flag, "w").close()
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        # probed at every pass, one failure is unhealthy: a timeout a loaded
        # machine cannot trip (at most the interval, which only sizes the
        # wait at the start), so only the flag's removal fails it
        r.write("h.yaml", proc_yaml("h", extra="  restart: never\n  healthCheck:\n"
                                    f"    exec: {{command: [\"/usr/bin/test\", \"-e\", {json.dumps(flag)}]}}\n"
                                    "    interval: 10s\n    timeout: 10s\n    retries: 1\n"))
        r.commit()
        a = self.agent(r.path, "--interval", "500ms")
        m = self.wait_metric(a, CONV % "h", lambda v: v == 1, "both converged")
        m = self.wait_metric(a, 'gitward_sync_total{result="success"}', lambda v: v >= 2, "two passes")

        code, ctype, body = self.get(a, "/metrics")
        self.assertEqual((code, ctype), (200, "text/plain; version=0.0.4"))
        rc, out = promtool_check(body)
        self.assertEqual((rc, out), (0, ""), body)
        # every family has HELP and TYPE, counters end in _total
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
        helps = set(re.findall(r"^# HELP (\S+) \S", body, re.M))
        self.assertEqual(set(types), helps)
        for name, typ in types.items():
            self.assertEqual(name.endswith("_total"), typ == "counter", name)
        self.assertEqual(types["gitward_pass_duration_seconds"], "histogram")
        self.assertEqual(types["gitward_reconcile_duration_seconds"], "gauge")

        m = parse(body)
        build = [k for k in m if k.startswith("gitward_build_info{")]
        self.assertEqual(len(build), 1, build)
        self.assertRegex(build[0], r'^gitward_build_info\{version="%s",libgit2="\d+\.\d+\.\d+"\}$'
                         % re.escape(gitward_version()))
        self.assertEqual(m[build[0]], 1)
        # the commit in force, for "commit by node" and rollout gates
        commit = [k for k in m if k.startswith("gitward_commit_info{")]
        self.assertEqual(len(commit), 1, commit)
        self.assertRegex(commit[0], r'^gitward_commit_info\{commit="[0-9a-f]{40}",ref="[^"]*"\}$')
        self.assertEqual(m[commit[0]], 1)
        # the histogram: cumulative buckets, +Inf = count = passes recorded
        buckets = [(k, v) for k, v in m.items() if k.startswith("gitward_pass_duration_seconds_bucket{")]
        self.assertEqual(buckets[-1][0], 'gitward_pass_duration_seconds_bucket{le="+Inf"}')
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        passes = sum(v for k, v in m.items() if k.startswith("gitward_sync_total{"))
        self.assertEqual(buckets[-1][1], passes)
        self.assertEqual(m["gitward_pass_duration_seconds_count"], passes)
        self.assertGreater(m["gitward_pass_duration_seconds_sum"], 0)
        self.assertGreater(m[SUCCESS], 0)
        self.assertEqual(m[SUCCESS], m[ATTEMPT])
        self.assertEqual(m[FETCH_OK], m[ATTEMPT])
        self.assertEqual(m[FETCH_ERRORS], 0)
        self.assertEqual((m[RESTARTS % "a"], m[RESTARTS % "h"]), (0, 0))
        self.assertEqual((m[CONV % "a"], m[CONV % "h"]), (1, 1))
        self.assertEqual(m['gitward_resources{kind="Process",state="running"}'], 2)

        # a workload killed: restarted, counted, converged again
        old = records(self.state)["a"]["pid"]
        os.kill(old, signal.SIGKILL)
        m = self.wait_metric(a, RESTARTS % "a", lambda v: v == 1, "a restart counted")
        new = records(self.state)["a"]["pid"]
        self.assertNotEqual(new, old)
        self.assertTrue(pid_alive(new))
        m = self.wait_metric(a, CONV % "a", lambda v: v == 1, "a converged again")
        self.assertEqual(m[RESTARTS % "h"], 0)

        # a failing health check: not converged, counted as not converged passes
        os.unlink(flag)
        m = self.wait_metric(a, CONV % "h", lambda v: v == 0, "h not converged")
        self.assertEqual(m[CONV % "a"], 1)
        self.wait_metric(a, 'gitward_sync_total{result="not_converged"}', lambda v: v >= 1, "a failed pass")
        m = self.metrics(a)
        self.assertLess(m[SUCCESS], m[ATTEMPT])
        self.assertIn("Process/h: health check failed (1 of 1, unhealthy): ", self.log())
        self.assertNotIn("health check failed (2 of 1", self.log())
        rc, out = promtool_check(self.get(a, "/metrics")[2])
        self.assertEqual((rc, out), (0, ""))

    def test_git_errors_counted_while_last_success_stays(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        a = self.agent(r.path, "--interval", "500ms")
        self.wait_metric(a, 'gitward_sync_total{result="success"}', lambda v: v >= 1, "a first pass")
        away = r.path + ".away"
        os.rename(r.path, away)
        m1 = self.wait_metric(a, FETCH_ERRORS, lambda v: v >= 1, "a git error")
        m2 = self.wait_metric(a, FETCH_ERRORS, lambda v: v > m1[FETCH_ERRORS], "another git error")
        self.assertGreater(m1[SUCCESS], 0)
        self.assertEqual(m2[SUCCESS], m1[SUCCESS])
        self.assertEqual(m2[FETCH_OK], m1[FETCH_OK])
        self.assertGreater(m2[ATTEMPT], m1[ATTEMPT])
        self.assertLess(m2[FETCH_OK], m2[ATTEMPT])
        self.assertGreaterEqual(m2['gitward_sync_total{result="git_error"}'], m2[FETCH_ERRORS])
        # the workload's own series stay as recorded
        self.assertEqual(m2[RESTARTS % "a"], 0)
        body = self.get(a, "/metrics")[2]

        # the repository back: fetches succeed again (after the backoff, which
        # doubles with each error while it is away: put back before promtool
        # runs, and waited for as long as a loaded machine may have let it grow)
        os.rename(away, r.path)
        rc, out = promtool_check(body)
        self.assertEqual((rc, out), (0, ""))
        m3 = self.wait_metric(a, FETCH_OK, lambda v: v > m2[FETCH_OK], "a fetch again", timeout=300)
        self.assertGreater(m3[SUCCESS], m2[SUCCESS])
        self.assertGreaterEqual(m3[FETCH_ERRORS], m2[FETCH_ERRORS])


INVALID = 'gitward_remote_commit_invalid{ref="main"}'
RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../contrib/prometheus/gitward.rules.yml")


def typo(name):
    """A Process manifest whose kind is misspelt: the commit is invalid."""
    return proc_yaml(name).replace("kind: Process", "kind: Proccess")


def info(m, name):
    """{commit: ref} of the series of an info metric (commit and ref labels)"""
    return {c: r for k in m for c, r in re.findall(r'^%s\{commit="([0-9a-f]{40})",ref="([^"]*)"\}$' % name, k)}


class BrokenMain(MetricsBase):
    """What an operator sees when main breaks or Git goes away: the ref's
    tip beside the commit in force, the ref's name on every series, and a
    line when it is over."""

    def refs(self, m):
        """every value of a ref label in the metrics"""
        return {v for k in m for v in re.findall(r'[{,]ref="([^"]*)"', k)}

    def status(self):
        r = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(r.rc, 0, r)
        return r.json()

    def test_an_invalid_main_shows_its_tip_keeps_the_ref_name_and_is_logged_when_fixed(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        good = r.commit("a")
        a = self.agent(r.path, "--interval", "500ms")
        m = wait_for(lambda: (lambda m: m if info(m, "gitward_commit_info") == {good: "main"} else None)(
            self.metrics(a)), what="the good commit applied")
        self.assertEqual(info(m, "gitward_remote_commit_info"), {good: "main"})
        self.assertEqual(m[INVALID], 0)
        self.assertEqual(self.status()["remote_commit"], good)

        r.write("b.yaml", typo("b"))
        bad = r.commit("b, with a typo")
        m = self.wait_metric(a, INVALID, lambda v: v == 1, "the invalid tip seen")
        # node runs good, main is at bad: both by name, nothing else
        self.assertEqual(info(m, "gitward_commit_info"), {good: "main"})
        self.assertEqual(info(m, "gitward_remote_commit_info"), {bad: "main"})
        self.assertEqual(self.refs(m), {"main"})
        # more passes over the invalid tip make no new series
        n = m['gitward_sync_total{result="invalid"}']
        m = self.wait_metric(a, 'gitward_sync_total{result="invalid"}', lambda v: v >= n + 2, "more invalid passes")
        self.assertEqual(self.refs(m), {"main"})
        self.assertEqual(info(m, "gitward_commit_info"), {good: "main"})
        rc, out = promtool_check(self.get(a, "/metrics")[2])
        self.assertEqual((rc, out), (0, ""))
        st = self.status()
        self.assertEqual((st["commit"], st["ref"], st["remote_commit"]), (good, "main", bad))
        self.assertIn('got "Proccess"', st["last_error"])
        code, _, body = self.get(a, "/status")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["remote_commit"], bad)
        self.assertNotIn("valid again", self.log())

        r.write("b.yaml", proc_yaml("b"))
        fixed = r.commit("b, fixed")
        m = wait_for(lambda: (lambda m: m if info(m, "gitward_commit_info") == {fixed: "main"} else None)(
            self.metrics(a)), what="the fixed commit applied")
        self.assertEqual(info(m, "gitward_remote_commit_info"), {fixed: "main"})
        self.assertEqual(m[INVALID], 0)
        self.assertRegex(self.log(), r"(?m)^\S+ info commit %s valid again on main \(the last invalid tip was %s\)$"
                         % (fixed[:12], bad[:12]))
        self.assertEqual(self.log().count("valid again"), 1)
        # recorded: status without an agent shows the tip
        stop(self.agents[0])
        st = self.status()
        self.assertEqual((st["commit"], st["ref"], st["remote_commit"]), (fixed, "main", fixed))
        text = run("status", "--state-dir", self.state).out
        self.assertIn(f"remote:       {fixed}\n", text)

    def test_a_git_outage_keeps_the_ref_name_and_is_logged_when_over(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        good = r.commit("a")
        a = self.agent(r.path, "--interval", "500ms", "--splay", "0")
        self.wait_metric(a, 'gitward_sync_total{result="success"}', lambda v: v >= 1, "a first pass")
        away = r.path + ".away"
        os.rename(r.path, away)
        m1 = self.wait_metric(a, FETCH_ERRORS, lambda v: v >= 1, "a git error")
        # a heal against the commit in force while Git is down
        old = records(self.state)["a"]["pid"]
        os.kill(old, signal.SIGKILL)
        # the record is replaced while a restarts: absent for a moment
        wait_for(lambda: (p := records(self.state).get("a", {}).get("pid")) and p != old and pid_alive(p),
                 what="a restarted")
        m = self.wait_metric(a, FETCH_ERRORS, lambda v: v > m1[FETCH_ERRORS], "another git error")
        self.assertEqual(info(m, "gitward_commit_info"), {good: "main"})
        self.assertEqual(info(m, "gitward_remote_commit_info"), {good: "main"})
        self.assertEqual(self.refs(m), {"main"})
        st = self.status()
        self.assertEqual((st["commit"], st["ref"], st["remote_commit"]), (good, "main", good))
        self.assertNotIn("Git reachable again", self.log())

        os.rename(away, r.path)
        new = r.commit("empty", allow_empty=True)
        m = wait_for(lambda: (lambda m: m if info(m, "gitward_commit_info") == {new: "main"} else None)(
            self.metrics(a)), timeout=300, what="the next commit applied")
        self.assertEqual(info(m, "gitward_remote_commit_info"), {new: "main"})
        self.assertRegex(self.log(), r"(?m)^\S+ info Git reachable again: fetched main at [0-9a-f]{12}$")
        self.assertEqual(self.log().count("Git reachable again"), 1)


class RealPrometheus(MetricsBase):
    def prometheus(self, target, rules=None):
        binary = need(PROMETHEUS, "prometheus")
        d = tempfile.mkdtemp(prefix="gw-prom-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        conf = os.path.join(d, "prometheus.yml")
        with open(conf, "w") as f:
            # a scrape of a loaded ASan agent may take more than a second
            f.write("global:\n  scrape_interval: 3s\n  scrape_timeout: 3s\n  evaluation_interval: 3s\n"
                    + (f"rule_files: [{json.dumps(rules)}]\n" if rules else "") +
                    "scrape_configs:\n  - job_name: gitward\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        log_path = os.path.join(d, "prometheus.log")

        def start(port):
            """prometheus on port, or None when another process took the port first"""
            with open(log_path, "w") as log:
                p = subprocess.Popen([binary, f"--config.file={conf}", f"--storage.tsdb.path={d}/data",
                                      f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
            self.addCleanup(stop, p, 30)  # runs before the rmtree registered above

            def log():
                with open(log_path, errors="replace") as f:
                    return f.read()
            wait_for(lambda: p.poll() is not None or "Server is ready to receive web requests" in log(),
                     timeout=120, what="prometheus to listen or exit")
            if p.poll() is None:
                return p
            self.assertIn("address already in use", log())
            return None
        port, p = retry_port(start)
        p.port = port
        p.dir = d
        return p

    def query(self, prom, q):
        c = http.client.HTTPConnection("127.0.0.1", prom.port, timeout=30)
        try:
            c.request("GET", "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
            r = c.getresponse()
            if r.status != 200:
                return None
            doc = json.loads(r.read())
            return doc["data"]["result"] if doc.get("status") == "success" else None
        except (OSError, ValueError):
            return None
        finally:
            c.close()

    def test_prometheus_scrapes_the_agent_and_answers_queries(self):
        need(PROMETHEUS, "prometheus")
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        a = self.agent(r.path, "--interval", "1s")
        target = f"127.0.0.1:{a.port}"
        prom = self.prometheus(target)

        def scraped():
            up = self.query(prom, 'up{job="gitward"}')
            info = self.query(prom, "gitward_build_info")
            if up and info and up[0]["value"][1] == "1":
                return up, info
            return None
        up, info = wait_for(scraped, timeout=120, step=0.5, what="Prometheus to scrape the agent")
        self.assertEqual(len(up), 1)
        self.assertEqual(up[0]["metric"]["instance"], target)
        self.assertEqual(len(info), 1, info)
        labels = info[0]["metric"]
        self.assertEqual(labels["instance"], target)
        self.assertEqual(labels["job"], "gitward")
        self.assertEqual(labels["version"], gitward_version())
        self.assertRegex(labels["libgit2"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(info[0]["value"][1], "1")

        conv = wait_for(lambda: (lambda v: v if v and v[0]["value"][1] == "1" else None)(
            self.query(prom, 'gitward_resource_converged{kind="Process",name="a"}')),
            timeout=120, step=0.5, what="gitward_resource_converged in Prometheus")
        self.assertEqual(conv[0]["metric"]["instance"], target)
        passes = wait_for(lambda: (lambda v: v if v and float(v[0]["value"][1]) >= 1 else None)(
            self.query(prom, "sum(gitward_pass_duration_seconds_count)")),
            timeout=120, step=0.5, what="pass count in Prometheus")
        self.assertGreaterEqual(float(passes[0]["value"][1]), 1)
        self.doCleanups()
        self.assertFalse(os.path.exists(prom.dir))

    def test_the_shipped_rules_see_an_invalid_main(self):
        """The issue's trial: a `kind: Proccess` typo on main, the node keeps
        its last good commit, and the shipped rules' ALERTS (pending: their
        `for:` is minutes) name the ref on the node."""
        need(PROMETHEUS, "prometheus")
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        a = self.agent(r.path, "--interval", "1s")
        self.wait_metric(a, 'gitward_sync_total{result="success"}', lambda v: v >= 1, "a first pass")
        r.write("b.yaml", typo("b"))
        r.commit("a typo")
        self.wait_metric(a, INVALID, lambda v: v == 1, "the invalid tip seen")
        prom = self.prometheus(f"127.0.0.1:{a.port}", rules=os.path.abspath(RULES))
        alerts = wait_for(lambda: self.query(prom, 'ALERTS{alertname="GitwardInvalidCommit"}'), timeout=120,
                          step=0.5, what="GitwardInvalidCommit in ALERTS")
        self.assertEqual(len(alerts), 1, alerts)
        labels = alerts[0]["metric"]
        self.assertEqual((labels["ref"], labels["severity"], labels["alertstate"]), ("main", "critical", "pending"))
        # the node is behind its tip and has no success since, but that is
        # the same cause: no second alert
        self.assertEqual(self.query(prom, 'ALERTS{alertname=~"GitwardBehindRemote|GitwardNoSuccessfulPass"}'), [])
