"""Maintenance windows (issue 29 item 1, SPEC "Operating a node"): outside
every --window an update is held -- the old workload keeps its pid, status,
/status and /metrics publish it as pending with held "window" and until the
next opening, a webhook gets one `held` event -- while a create of the same
commit runs; the agent wakes at the opening (its poll interval is an hour)
and applies the update without a new commit; a bad --window is a usage
error naming the column. Windows are computed from the clock so that a
"closed" one stays closed for days and the one that opens does so at a
minute boundary at least 15 s after the agent holding it has started; every
wait is bounded generously and only met on failure."""
import datetime as dt
import json
import os
import re

from gwtest import GITWARD, pid_alive, proc_yaml, run, stop, wait_for
from test_agent import AgentBase
from test_events import Receiver

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
BOUND = 120.0  # seconds: only met on failure


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def closed_window():
    """A window three days from today (UTC), 00:00-00:30: closed now and
    for the next two days; (spec, its next opening)."""
    today = utc_now().date()
    day = today + dt.timedelta(days=3)
    opens = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return f"{DAYS[day.weekday()]} 00:00-00:30 UTC", opens


def soon_window(margin=15):
    """A window opening at the first minute boundary at least margin
    seconds from now, for ten minutes, every day; (spec, its opening)."""
    t = utc_now() + dt.timedelta(seconds=margin)
    opens = (t + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    closes = opens + dt.timedelta(minutes=10)
    return f"* {opens:%H:%M}-{closes:%H:%M}", opens


class Window(AgentBase):
    def setUp(self):
        super().setUp()
        self.rx = Receiver()

    def tearDown(self):
        super().tearDown()
        self.rx.close()

    def metric(self, agent, series):
        _, body = self.http(agent, "/metrics")
        m = re.search("^" + re.escape(series) + r" (\S+)$", body, re.M)
        return float(m.group(1)) if m else None

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def test_outside_a_window_updates_wait_creates_run_and_the_opening_applies_them(self):
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        r.commit("web")
        spec, opens = closed_window()
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--window", spec,
                       "--notify", self.rx.url)
        web = wait_for(lambda: self.pids().get("web"), timeout=BOUND, what="web created (a create is not held)")

        # an update of web and a new api in one commit, outside the window
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600"), "  env: {V: \"2\"}\n"))
        r.write("apps/api.yaml", proc_yaml("api", ("/bin/sleep", "3600")))
        commit = r.commit("update web, add api")
        wait_for(lambda: self.pids().get("api") and pid_alive(self.pids()["api"]), timeout=BOUND,
                 what="api created beside the held update")
        want = {"kind": "Process", "name": "web", "action": "update", "held": "window", "until": iso(opens)}
        wait_for(lambda: self.status().get("pending") == [want], timeout=BOUND, what="the update published as held")
        doc = self.status()
        self.assertEqual(doc["commit"], commit)
        self.assertGreater(opens, utc_now())
        self.assertEqual(self.pids()["web"], web)
        self.assertTrue(pid_alive(web))
        code, body = self.http(a, "/status")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["pending"], [want])
        text = run("status", "--state-dir", self.state).out
        self.assertRegex(text, r"pending: +update Process/web \(held: window until " + re.escape(iso(opens)) + r"\)")
        self.assertEqual(self.metric(a, 'gitward_held_actions{reason="window"}'), 1)
        self.assertEqual(self.metric(a, 'gitward_held_actions{reason="fleet-lock"}'), 0)
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="update"}'), 1)

        # told once, whatever the number of passes; never as a failure
        ev = wait_for(lambda: self.rx.events("held"), timeout=BOUND, what="held event")[0][2]
        self.assertEqual(ev["commit"], commit)
        self.assertEqual(ev["resources"], [dict(want, until=iso(opens).replace("Z", ".000Z"))])
        self.assertRegex(ev["message"], r"^1 disruptive action held \(window\) until ")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 5, timeout=BOUND, what="five more held passes")
        self.assertEqual(len(self.rx.events("held")), 1, [e[2]["event"] for e in self.rx.events()])
        self.assertEqual(self.rx.events("failed"), [])
        self.assertEqual(self.pids()["web"], web)
        self.assertEqual(self.state_json()["last_attempt_result"], "held")
        self.assertNotIn('"result": "failed"', run("history", "--output", "json", "--state-dir", self.state).out)
        stop(a)

        # the same node with a window that opens soon, polling once an hour:
        # it holds the update until the opening, then wakes and applies it
        spec, opens = soon_window()
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--splay", "0", "--window", spec)
        wait_for(lambda: f"held (window) until {iso(opens)}" in self.log(), timeout=BOUND,
                 what="the update held until the opening")
        self.assertEqual(self.pids()["web"], web)

        # meanwhile: a bad window is a usage error naming the column
        for cmd in ("agent", "reconcile"):
            res = run(cmd, "--repo", r.path, "--state-dir", os.path.join(self.tmp, "other"),
                      "--window", "mon-fry 02:00-04:00")
            self.assertEqual(res.rc, 64, res)
            self.assertIn("--window 'mon-fry 02:00-04:00': column 5: unknown day \"fry\" (mon..sun)", res.err)
        res = run("reconcile", "--repo", r.path, "--window", "* 02:00-04:00 Nowhere/Atlantis")
        self.assertEqual(res.rc, 64, res)
        self.assertIn("column 15: unknown time zone \"Nowhere/Atlantis\"", res.err)
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write("window:\n  - \"* 02:00-04:00\"\n  - \"sat 2:00-04:00\"\n")
        res = run("reconcile", "--repo", r.path, "--config", cfg)
        self.assertEqual(res.rc, 1, res)  # a config file's bad value, as for every option: exit 1, file:line:col
        self.assertIn("gitward.yaml:3:5: --window 'sat 2:00-04:00': column 5: expected HH:MM-HH:MM", res.err)

        new = wait_for(lambda: (p := self.pids().get("web")) != web and p and pid_alive(p) and p,
                       timeout=(opens - utc_now()).total_seconds() + BOUND, what="web updated at the opening")
        self.assertGreaterEqual(utc_now(), opens)
        wait_for(lambda: self.status().get("pending") == [], timeout=BOUND, what="nothing pending")
        self.assertEqual(self.metric(a, 'gitward_held_actions{reason="window"}'), 0)
        self.assertTrue(pid_alive(new))
        self.assertEqual(self.state_json()["last_attempt_result"], "success")

    def test_reconcile_outside_a_window_shows_what_it_holds(self):
        """One pass: the create runs, the update is held; exit 1 (SPEC: not
        converged), no error line; the plan and the held action are told."""
        r = self.repo()
        r.write("apps/job.yaml", proc_yaml("job", ("/bin/sleep", "3600")))
        r.commit("job")
        spec, opens = closed_window()
        args = ("reconcile", "--repo", r.path, "--path", "apps", "--state-dir", self.state, "--node", "n1",
                "--window", spec)
        res = run(*args)
        self.assertEqual(res.rc, 0, res)
        job = self.pids()["job"]
        r.write("apps/job.yaml", proc_yaml("job", ("/bin/sleep", "3601")))
        r.commit("job v2")
        res = run(*args)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"1 held (window) until {iso(opens)}. Not converged.", res.out)
        self.assertNotIn("error", res.err)
        self.assertEqual(self.pids()["job"], job)
        self.assertTrue(pid_alive(job))
        self.assertEqual(self.status()["pending"], [{"kind": "Process", "name": "job", "action": "update",
                                                     "held": "window", "until": iso(opens)}])
        res = run(*args, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.json()["result"]["held"], 1)
        # without the window it goes
        res = run(*args[:-2])
        self.assertEqual(res.rc, 0, res)
        self.assertNotEqual(self.pids()["job"], job)
        self.assertEqual(self.status()["pending"], [])
