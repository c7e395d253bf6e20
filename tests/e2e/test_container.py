"""End to end on a real Podman API service: containers are created, kept,
replaced, pruned, restarted and adopted through the Docker Engine API, and
only ever the ones gitward labelled."""
import json
import os
import signal
import subprocess
import time
import unittest
import urllib.request

import podman_env
from gwtest import GITWARD, free_port, HDR, TempDirTest, pid_alive, proc_yaml, records, run, wait_for


def setUpModule():
    podman_env.setup_module()


def tearDownModule():
    podman_env.teardown_module()


def cont_yaml(name, command=("/bin/sleep", "300"), extra=""):
    cmd = ", ".join(json.dumps(c) for c in command)
    return (f"{HDR}kind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {podman_env.IMAGE}\n"
            f"  command: [{cmd}]\n  network: none\n  stopTimeout: 1s\n{extra}")


class Containers(TempDirTest):
    def setUp(self):
        super().setUp()
        self.pm = podman_env.PODMAN

    def tearDown(self):
        # remove what this test's gitward created (its state dir label), nothing else
        ids = self.pm.podman("ps", "-a", "-q", "--filter", f"label=gitward.state-dir={self.state}", check=False)
        if ids:
            self.pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0, socket=None):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                  "--container-socket", socket or self.pm.socket, *args, timeout=300)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def ids(self):
        """name -> (id, state) of the containers this test's gitward owns."""
        out = self.pm.podman("ps", "-a", "--filter", f"label=gitward.state-dir={self.state}", "--format", "json")
        return {c["Labels"]["gitward.name"]: (c["Id"][:12], c["State"]) for c in json.loads(out or "[]")}

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return {x["name"]: x for x in res.json()["resources"]}

    def three(self):
        r = self.repo()
        for n in ("a", "b", "c"):
            r.write(f"{n}.yaml", cont_yaml(n, extra=f"  env: {{WHO: {n}, V: \"1\"}}\n"))
        r.commit()
        return r

    def test_three_containers_a_second_pass_keeps_ids_a_change_replaces_one(self):
        r = self.three()
        res = self.reconcile(r)
        self.assertIn("Plan: 3 to create", res.out)
        first = self.ids()
        self.assertEqual(sorted(first), ["a", "b", "c"])
        self.assertTrue(all(s == "running" for _, s in first.values()))
        names = self.pm.podman("ps", "--filter", f"label=gitward.state-dir={self.state}", "--format", "{{.Names}}")
        self.assertEqual(sorted(names.split()), ["gitward-a", "gitward-b", "gitward-c"])
        labels = json.loads(self.pm.podman("inspect", "gitward-a", "--format", "{{json .Config.Labels}}"))
        self.assertEqual(labels["gitward.managed"], "true")
        self.assertEqual(labels["gitward.name"], "a")
        self.assertEqual(len(labels["gitward.spec-hash"]), 64)
        st = self.status()
        self.assertTrue(first["a"][0].startswith(st["a"]["id"][:12]))
        self.assertNotIn("pid", st["a"])
        # a second pass keeps every id
        res = self.reconcile(r)
        self.assertIn("3 unchanged", res.out)
        self.assertEqual(self.ids(), first)
        # a change replaces only that one
        r.write("b.yaml", cont_yaml("b", extra="  env: {WHO: b, V: \"2\"}\n"))
        r.commit()
        res = self.reconcile(r)
        self.assertIn('  ~ Container/b          update  env.V: "1" -> "2"', res.out)
        after = self.ids()
        self.assertEqual(after["a"], first["a"])
        self.assertEqual(after["c"], first["c"])
        self.assertNotEqual(after["b"][0], first["b"][0])
        env = self.pm.podman("inspect", "gitward-b", "--format", "{{json .Config.Env}}")
        self.assertIn("V=2", json.loads(env))
        # prune
        r.remove("c.yaml")
        r.commit()
        res = self.reconcile(r)
        self.assertIn("  - Container/c          delete", res.out)
        self.assertEqual(sorted(self.ids()), ["a", "b"])

    def test_unlabelled_containers_are_left_alone_and_never_taken_over(self):
        other = self.pm.podman("run", "-d", "--network", "none", "--name", "gitward-intruder", podman_env.IMAGE,
                               "/bin/sleep", "300")
        stranger = self.pm.podman("run", "-d", "--network", "none", podman_env.IMAGE, "/bin/sleep", "300")
        try:
            r = self.repo()
            r.write("a.yaml", cont_yaml("intruder"))
            r.write("b.yaml", cont_yaml("fine"))
            r.commit()
            res = self.reconcile(r, expect=1)
            self.assertIn("a container named gitward-intruder exists and is not managed by this gitward", res.err)
            self.assertEqual(self.pm.podman("inspect", other, "--format", "{{.State.Status}}"), "running")
            self.assertEqual(self.pm.podman("inspect", stranger, "--format", "{{.State.Status}}"), "running")
            self.assertEqual(self.ids()["fine"][1], "running")
            self.assertEqual(self.status()["intruder"]["state"], "failed")
            # even with everything pruned, the unlabelled ones stay
            r.remove("a.yaml")
            r.remove("b.yaml")
            r.commit()
            self.reconcile(r, "--allow-empty")
            self.assertEqual(self.ids(), {})
            self.assertEqual(self.pm.podman("inspect", other, "--format", "{{.State.Status}}"), "running")
            self.assertEqual(self.pm.podman("inspect", stranger, "--format", "{{.State.Status}}"), "running")
        finally:
            self.pm.podman("rm", "-f", "-t", "0", other, stranger, check=False)

    def test_killed_container_is_restarted_and_a_new_gitward_adopts_by_labels(self):
        r = self.repo()
        r.write("a.yaml", cont_yaml("a"))
        r.write("b.yaml", cont_yaml("b", extra="  restart: never\n"))
        r.commit()
        self.reconcile(r)
        first = self.ids()
        self.pm.podman("kill", "gitward-a")
        self.pm.podman("kill", "gitward-b")
        res = self.reconcile(r, expect=1)  # b stays down under restart: never
        self.assertIn("  ! Container/a          restart  exited with status 137", res.out)
        after = self.ids()
        self.assertNotEqual(after["a"][0], first["a"][0])
        self.assertEqual(after["a"][1], "running")
        self.assertEqual(after["b"], (first["b"][0], "exited"))
        st = self.status()
        self.assertEqual(st["a"]["restarts"], 1)
        self.assertEqual(st["b"]["state"], "failed")
        # adoption: without its state file, a new gitward finds them by labels
        os.remove(os.path.join(self.state, "state.json"))
        res = self.reconcile(r, "--dry-run", expect=0)
        self.assertIn("2 unchanged", res.out)
        self.assertEqual(self.ids(), after)

    def test_agent_restarts_a_killed_container_at_once_from_the_engine_events(self):
        r = self.repo()
        r.write("a.yaml", cont_yaml("a"))
        r.commit()
        port = free_port()
        log = open(os.path.join(self.tmp, "agent.log"), "w")
        agent = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--container-socket", self.pm.socket, "--interval", "1h",
                                  "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            first = wait_for(lambda: (x := self.ids().get("a")) and x[1] == "running" and x[0], timeout=120,
                             what="container a running")
            t0 = time.monotonic()
            self.pm.podman("kill", "gitward-a")
            # the interval is an hour: only the event stream can have done it in
            # minutes; the bound leaves a loaded machine's podman its time
            again = wait_for(lambda: (x := self.ids().get("a")) and x[1] == "running" and x[0] != first and x[0],
                             timeout=300, step=0.05, what="container a replaced after the kill")
            took = time.monotonic() - t0
            print(f"\ncontainer killed -> running again: {took:.2f}s")
            self.assertNotEqual(again, first)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=120)
            log.close()
        with open(os.path.join(self.tmp, "agent.log")) as f:
            text = f.read()
        self.assertIn("heal pass done", text)
        self.assertEqual(agent.returncode, 0, text[-2000:])

    def test_unreachable_engine_fails_containers_only(self):
        r = self.repo()
        r.write("a.yaml", cont_yaml("box"))
        r.write("b.yaml", proc_yaml("proc"))
        r.commit()
        missing = os.path.join(self.tmp, "no-engine.sock")
        res = self.reconcile(r, socket=missing, expect=1)
        self.assertIn(f"container engine at {missing} is unreachable", res.err)
        self.assertTrue(pid_alive(records(self.state)["proc"]["pid"]))
        st = self.status()
        self.assertEqual(st["proc"]["state"], "running")
        self.assertEqual(st["box"]["state"], "failed")
        self.assertIn(missing, st["box"]["detail"])
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state,
                  "--container-socket", missing)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"Container resources: container engine at {missing} is unreachable", res.err)
        # the engine back: it converges
        self.reconcile(r)
        self.assertEqual(self.ids()["box"][1], "running")

    def test_pull_failure_and_missing_image_carry_the_engine_message(self):
        r = self.repo()
        r.write("a.yaml", cont_yaml("pulled", extra="  pull: always\n").replace(
            podman_env.IMAGE, "registry.invalid/nothing:1"))
        r.write("b.yaml", cont_yaml("absent", extra="  pull: never\n").replace(
            podman_env.IMAGE, "localhost/absent:1"))
        r.write("c.yaml", cont_yaml("fine"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("pull registry.invalid/nothing:1:", res.err)
        self.assertIn("image localhost/absent:1 is not on this node and pull is never", res.err)
        self.assertEqual(sorted(self.ids()), ["fine"])

    def test_env_files_ports_and_health_checks(self):
        secret = "tok-" + os.urandom(6).hex()
        envfile = os.path.join(self.tmp, "c.env")
        with open(envfile, "w") as f:
            f.write(f"TOKEN={secret}\n")
        port = free_port()
        r = self.repo()
        r.write("web.yaml", cont_yaml("web", command=("/bin/httpd", "-f", "-p", "80", "-h", "/www"),
                                      extra=f"  envFiles: [{envfile}]\n  healthCheck:\n"
                                            f"    http: {{url: \"http://127.0.0.1:{port}/\"}}\n"
                                            "    interval: 30s\n    timeout: 30s\n")
                .replace("network: none", f"network: bridge\n  ports: [\"127.0.0.1:{port}:80/tcp\"]"))
        # the probes expected to pass get a timeout a loaded machine's podman
        # exec cannot trip (the default 2 s can, and one failure is no longer
        # "healthy"); the interval, at least the timeout, only sizes the start wait
        r.write("probe.yaml", cont_yaml("probe", extra="  healthCheck: {exec: {command: [/bin/true]}, "
                                                       "interval: 30s, timeout: 30s}\n"))
        r.commit()
        res = self.reconcile(r)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            self.assertEqual(resp.read().decode(), "hello from busybox\n")
        env = json.loads(self.pm.podman("inspect", "gitward-web", "--format", "{{json .Config.Env}}"))
        self.assertIn(f"TOKEN={secret}", env)
        st = self.status()
        self.assertEqual(st["web"]["health"], "healthy")
        self.assertEqual(st["probe"]["health"], "healthy")
        for text in (res.out, res.err, run("status", "--output", "json", "--state-dir", self.state).out):
            self.assertNotIn(secret, text)
        with open(os.path.join(self.state, "state.json")) as f:
            self.assertNotIn(secret, f.read())
        labels = self.pm.podman("inspect", "gitward-web", "--format", "{{json .Config.Labels}}")
        self.assertNotIn(secret, labels)
        # a failing exec probe makes the container unhealthy, and it is replaced
        r.write("probe.yaml", cont_yaml("probe", extra="  healthCheck: {exec: {command: [/bin/false]}, "
                                                       "interval: 1s, retries: 1}\n"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("unhealthy", res.err)
        self.assertEqual(self.status()["probe"]["health"], "unhealthy")


if __name__ == "__main__":
    unittest.main()
