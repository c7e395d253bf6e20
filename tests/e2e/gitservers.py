"""Real Git servers on loopback for the tests, started and torn down by them.

GitServers runs, in one temp dir it owns:
  - nginx + fcgiwrap + `git http-backend` serving bare repos over plain HTTP
    and HTTPS (a test CA and a server certificate for 127.0.0.1/localhost,
    made with the openssl CLI), with the repos under /private/ behind basic
    auth (htpasswd);
  - sshd (`sshd -f CONF -D -e`) with a host key and an authorized client key
    made by ssh-keygen, serving the same repos by absolute path.

scp-like URLs (`root@HOST:/abs/r.git`) cannot carry a port, and libgit2 1.5
(libssh2) reads no ssh client config, so scp-like always means port 22. The
fixture therefore also has sshd listen on port 22 of a second loopback
address 127.0.0.N (N picked at random and probed first; the whole 127/8 is
local on Linux) and gives it its own known_hosts line. `scp_host` is None
when no such address could be bound (something holds *:22): the test that
needs it then fails under CI and is skipped elsewhere.

Also here: CountingForwarder (a TCP relay that counts connections and bytes,
for the benchmark) and SilentServer (accepts connections, never answers).

Nothing here touches anything it did not create, except /run/sshd (sshd's
privilege separation dir): created only when missing, removed only when we
created it and no other sshd runs.
"""
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

CI = bool(os.environ.get("CI"))
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
PRIVSEP_DIR = "/run/sshd"
START_TIMEOUT = 120.0  # nginx, fcgiwrap, sshd and a first ls-remote on a loaded machine

NEEDED = {"nginx": "nginx", "fcgiwrap": "fcgiwrap", "sshd": "openssh-server", "ssh-keygen": "openssh-client",
          "openssl": "openssl", "htpasswd": "apache2-utils", "git": "git"}


def _which(name):
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def missing_tools():
    """The packages whose programs are missing on this host."""
    out = [pkg for prog, pkg in NEEDED.items() if not _which(prog)]
    if not os.access(HTTP_BACKEND, os.X_OK):
        out.append("git (git-http-backend)")
    return out


def require_tools():
    """Skip when the servers cannot run here; under CI that is a failure."""
    miss = missing_tools()
    if miss:
        msg = "real Git servers need: " + ", ".join(miss)
        if CI:
            raise AssertionError(msg + " (CI is set: a missing server is a failure)")
        raise unittest.SkipTest(msg)


def free_port(host="127.0.0.1"):
    """A TCP port on host that was free when asked, chosen below the kernel's
    ephemeral range: no outgoing connection (a test client, the agent's own
    fetch) is ever given it as its source port between this call and the
    caller's bind. Another server may still take it: servers a test starts
    go through a retry."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low - 1, 2048)
    for _ in range(200):
        port = random.randint(max(1024, top - 12000), top)
        s = socket.socket()
        try:
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise AssertionError("no free port below the ephemeral range")


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _bindable(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _run(argv, **kw):
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {cp.returncode}: {cp.stderr.strip()}")
    return cp.stdout


def _other_sshd_running(mine):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sshd":
                    return True
        except OSError:
            pass
    return False


class GitServers:
    """Start with start() (or `with GitServers() as s:`), stop with stop().

    Repos: bare(name) / bare(name, private=True) create a bare repo served at
    http_url(name) / https_url(name) / ssh_url(name) / scp_url(name)."""

    user = "alice"
    # a personal access token given as the URL's user (https://TOKEN@host/...):
    # a user of the private location whose password is empty
    token = "SECRETTOKEN123"

    def __init__(self, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="gw-servers-")
        self._own_tmp = tmp is None
        self.srv = os.path.join(self.tmp, "srv")
        self.password = "pw-" + secrets.token_hex(12)
        self.procs = {}
        self.logs = {}
        self.created_privsep = False
        self.scp_host = None
        self.http_port = self.https_port = self.ssh_port = None

    # ---- lifecycle ---------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        require_tools()
        try:
            os.makedirs(os.path.join(self.srv, "private"), exist_ok=True)
            self._make_tls()
            self._make_ssh_keys()
            _run(["htpasswd", "-b", "-c", "-B", self.htpasswd, self.user, self.password])
            _run(["htpasswd", "-b", "-B", self.htpasswd, self.token, ""])
            self._start_http()
            self._start_sshd()
            self._check()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            if p.poll() is None:
                # the leader only: nginx's master and sshd's listener stop
                # and reap their own children (children orphaned by a group
                # kill would stay zombies where init does not reap)
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    p.wait(timeout=10)
        for f in self.logs.values():
            f.close()
        self.logs = {}
        if self.created_privsep and not _other_sshd_running(set()):
            try:
                os.rmdir(PRIVSEP_DIR)
            except OSError:
                pass
            self.created_privsep = False
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        self.logs[name] = log
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.tmp)
        return self.procs[name]

    def log(self, name):
        """The output of one of the started programs (nginx, fcgiwrap, sshd)."""
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _wait(self, what, pred):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} while starting:\n{self.log(name)}")
            if pred():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready after {START_TIMEOUT}s")

    # ---- TLS ---------------------------------------------------------------

    def _make_ca(self, stem, cn):
        key, pem = os.path.join(self.tmp, stem + ".key"), os.path.join(self.tmp, stem + ".pem")
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", key, "-out", pem, "-days", "3", "-subj", f"/CN={cn}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return key, pem

    def _make_tls(self):
        ca_key, self.ca_file = self._make_ca("ca", "gitward test CA")
        _, self.other_ca_file = self._make_ca("other-ca", "unrelated test CA")
        self.tls_key = os.path.join(self.tmp, "server.key")
        self.tls_cert = os.path.join(self.tmp, "server.pem")
        csr = os.path.join(self.tmp, "server.csr")
        ext = os.path.join(self.tmp, "server.ext")
        # DNS:127.0.0.1 beside IP:127.0.0.1: Debian's libgit2 1.5 verifies
        # with mbedTLS 2.28, which matches the host only against dNSName
        # entries (curl/OpenSSL and GnuTLS match the iPAddress one)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:127.0.0.1\n")
        _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", self.tls_key, "-out", csr, "-subj", "/CN=127.0.0.1"])
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", ca_key, "-set_serial",
              str(random.randint(1, 2**62)), "-days", "2", "-extfile", ext, "-out", self.tls_cert])

    # ---- HTTP(S) -----------------------------------------------------------

    @property
    def htpasswd(self):
        return os.path.join(self.tmp, "htpasswd")

    @property
    def access_log(self):
        return os.path.join(self.tmp, "access.log")

    def _nginx_conf(self):
        t = self.tmp
        git = (f"            include /etc/nginx/fastcgi_params;\n"
               f"            fastcgi_pass unix:{t}/fcgi.sock;\n"
               f"            fastcgi_param SCRIPT_FILENAME {HTTP_BACKEND};\n"
               f"            fastcgi_param GIT_PROJECT_ROOT {self.srv};\n"
               f"            fastcgi_param GIT_HTTP_EXPORT_ALL 1;\n"
               f"            fastcgi_param PATH_INFO $uri;\n"
               f"            fastcgi_param REMOTE_USER $remote_user;\n")
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "".join(f"    {k}_temp_path {t}/nginx/{k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return (f"{user}worker_processes 1;\npid {t}/nginx.pid;\nerror_log {t}/nginx-error.log info;\n"
                f"events {{ worker_connections 128; }}\n"
                f"http {{\n{temps}"
                # one line per request: what the benchmark counts
                f"    log_format gw '$server_port \"$request\" $status $request_length $bytes_sent';\n"
                f"    access_log {self.access_log} gw;\n"
                f"    client_max_body_size 0;\n"
                f"    server {{\n"
                f"        listen 127.0.0.1:{self.http_port};\n"
                f"        listen 127.0.0.1:{self.https_port} ssl;\n"
                f"        ssl_certificate {self.tls_cert};\n"
                f"        ssl_certificate_key {self.tls_key};\n"
                f"        location /private/ {{\n"
                f"            auth_basic \"gitward test\";\n"
                f"            auth_basic_user_file {self.htpasswd};\n{git}"
                f"        }}\n"
                f"        location / {{\n{git}        }}\n"
                f"    }}\n}}\n")

    def _start_http(self):
        os.makedirs(os.path.join(self.tmp, "nginx"), exist_ok=True)
        sock = os.path.join(self.tmp, "fcgi.sock")
        self._spawn("fcgiwrap", [_which("fcgiwrap"), "-s", "unix:" + sock])  # one process: nothing to orphan
        self._wait("fcgiwrap", lambda: os.path.exists(sock))
        for attempt in range(5):
            self.http_port = free_port()
            self.https_port = free_port()
            while self.https_port == self.http_port:
                self.https_port = free_port()
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self._nginx_conf())
            p = self._spawn("nginx", [_which("nginx"), "-p", self.tmp + "/", "-e", self.tmp + "/nginx-error.log",
                                      "-c", conf, "-g", "daemon off;"])
            try:
                self._wait("nginx", lambda: _port_open("127.0.0.1", self.http_port) and
                           _port_open("127.0.0.1", self.https_port))
                return
            except RuntimeError:
                # a port taken between the probe and the bind: try others
                if p.poll() is None or attempt == 4:
                    raise
                self.procs.pop("nginx")
                self.logs.pop("nginx").close()

    def access_lines(self):
        """Parsed access log: (port, request, status, request_length, bytes_sent)."""
        out = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    port, rest = line.split(" ", 1)
                    req, tail = rest[1:].rsplit("\" ", 1)
                    status, rlen, sent = tail.split()
                    out.append((int(port), req, int(status), int(rlen), int(sent)))
        except OSError:
            pass
        return out

    # ---- SSH ---------------------------------------------------------------

    def _make_ssh_keys(self):
        self.host_key = os.path.join(self.tmp, "ssh_host_ed25519_key")
        self.client_key = os.path.join(self.tmp, "client_key")
        self.other_host_key = os.path.join(self.tmp, "other_host_key")
        for k in (self.host_key, self.client_key, self.other_host_key):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitward-test", "-f", k])
        with open(self.client_key + ".pub") as f, open(os.path.join(self.tmp, "authorized_keys"), "w") as out:
            out.write(f.read())

    def host_pub(self, other=False):
        """`ssh-ed25519 AAAA...` of the server's host key (or of an unrelated key)."""
        with open((self.other_host_key if other else self.host_key) + ".pub") as f:
            return " ".join(f.read().split()[:2])

    def known_hosts_line(self, port=None, host="127.0.0.1", other=False):
        port = port or self.ssh_port
        name = host if port == 22 else f"[{host}]:{port}"
        return f"{name} {self.host_pub(other)}\n"

    def write_known_hosts(self, path, ports=(), other=False):
        """A known_hosts file for the server on ssh_port (and the scp-like
        address, and any extra ports such as a forwarder's)."""
        with open(path, "w") as f:
            f.write(self.known_hosts_line(other=other))
            if self.scp_host:
                f.write(self.known_hosts_line(22, self.scp_host, other))
            for p in ports:
                f.write(self.known_hosts_line(p, other=other))
        return path

    def _sshd_conf(self):
        t = self.tmp
        listen = f"ListenAddress 127.0.0.1:{self.ssh_port}\n"
        if self.scp_host:
            listen += f"ListenAddress {self.scp_host}:22\n"
        return (listen + f"HostKey {self.host_key}\nPidFile {t}/sshd.pid\nAuthorizedKeysFile {t}/authorized_keys\n"
                "StrictModes no\nPermitRootLogin yes\nUsePAM no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAllowTcpForwarding no\n"
                "X11Forwarding no\nPrintMotd no\nMaxStartups 100\nLoginGraceTime 30\nLogLevel INFO\n")

    def _pick_scp_host(self):
        for _ in range(20):
            host = f"127.0.0.{random.randint(2, 254)}"
            if _bindable(host, 22):
                return host
        return None

    def _start_sshd(self):
        if not os.path.isdir(PRIVSEP_DIR):
            os.makedirs(PRIVSEP_DIR, mode=0o755)
            self.created_privsep = True
        self.known_hosts = os.path.join(self.tmp, "known_hosts")
        for attempt in range(5):
            self.ssh_port = free_port()
            self.scp_host = self._pick_scp_host() if os.geteuid() == 0 else None
            conf = os.path.join(self.tmp, "sshd_config")
            with open(conf, "w") as f:
                f.write(self._sshd_conf())
            p = self._spawn("sshd", [_which("sshd"), "-f", conf, "-D", "-e"])
            try:
                self._wait("sshd", lambda: _port_open("127.0.0.1", self.ssh_port) and
                           (not self.scp_host or _port_open(self.scp_host, 22)))
                break
            except RuntimeError:
                if p.poll() is None or attempt == 4:
                    raise
                self.procs.pop("sshd")
                self.logs.pop("sshd").close()
        self.write_known_hosts(self.known_hosts)

    # ---- repos and URLs ----------------------------------------------------

    def repo_path(self, name, private=False):
        return os.path.join(self.srv, "private" if private else "", name + ".git")

    def bare(self, name, private=False, branch="main"):
        """A new empty bare repo on the servers; returns its path."""
        p = self.repo_path(name, private)
        _run(["git", "init", "-q", "--bare", "-b", branch, p])
        return p

    def _rel(self, name, private):
        return ("private/" if private else "") + name + ".git"

    def http_url(self, name, private=False, port=None):
        return f"http://127.0.0.1:{port or self.http_port}/{self._rel(name, private)}"

    def https_url(self, name, private=False, port=None, userinfo=""):
        at = userinfo + "@" if userinfo else ""
        return f"https://{at}127.0.0.1:{port or self.https_port}/{self._rel(name, private)}"

    def ssh_url(self, name, private=False, port=None):
        return f"ssh://root@127.0.0.1:{port or self.ssh_port}{self.repo_path(name, private)}"

    def scp_url(self, name, private=False):
        return f"root@{self.scp_host}:{self.repo_path(name, private)}" if self.scp_host else None

    def git_env(self, known_hosts=None):
        """Environment for the git CLI to reach these servers."""
        kh = known_hosts or self.known_hosts
        env = dict(os.environ)
        env.update({
            "GIT_SSL_CAINFO": self.ca_file,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": f"ssh -F /dev/null -i {self.client_key} -o IdentitiesOnly=yes -o BatchMode=yes "
                               f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={kh}",
            "GIT_CONFIG_NOSYSTEM": "1",
        })
        return env

    def _check(self):
        """Every transport answers `git ls-remote` before a test relies on it."""
        self.bare("gitward-probe")
        self.bare("gitward-probe", private=True)
        userinfo = f"{self.user}:{self.password}"
        urls = [self.http_url("gitward-probe"), self.https_url("gitward-probe"),
                self.https_url("gitward-probe", private=True, userinfo=userinfo), self.ssh_url("gitward-probe")]
        if self.scp_host:
            urls.append(self.scp_url("gitward-probe"))
        for url in urls:
            cp = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, timeout=START_TIMEOUT,
                                env=self.git_env())
            if cp.returncode != 0:
                raise RuntimeError(f"git ls-remote {url.replace(self.password, '***')}: {cp.stderr.strip()}\n"
                                   f"nginx: {self.log('nginx')}\nsshd: {self.log('sshd')}")


class SilentServer:
    """Accepts TCP connections on a loopback port and never answers: a stalled
    Git server. Stop with stop(); held connections are closed then."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)

    def stop(self):
        self._stop = True
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


class CountingForwarder:
    """A TCP relay 127.0.0.1:port -> target that counts connections and bytes
    each way (bytes_up: client to server). reset() zeroes the counters."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.reset()
        self._stop = False
        self.threads = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.connections = 0
            self.bytes_up = 0
            self.bytes_down = 0
            self.open = 0

    def _pipe(self, src, dst, up):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _serve(self, c):
        try:
            s = socket.create_connection(self.target, timeout=10)
            s.settimeout(None)
        except OSError:
            c.close()
            return
        t = threading.Thread(target=self._pipe, args=(s, c, False), daemon=True)
        t.start()
        self._pipe(c, s, True)
        t.join()
        c.close()
        s.close()
        with self.lock:
            self.open -= 1

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def idle(self, timeout=10.0):
        """Wait until every relayed connection has closed (counters final)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.open == 0:
                    return True
            time.sleep(0.02)
        return False

    def stop(self):
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


class TricklingServer:
    """Smart HTTP on a loopback port: every request is relayed to `git
    http-backend` (the repos under root), until trickle is set; from then on
    the request that ends a fetch's negotiation (its body says "done") gets
    "NAK" and then one sideband progress line a second, forever: a server
    that always progresses and never finishes. trickling: such answers
    running now; trickled: begun so far. Stop with stop()."""

    def __init__(self, root):
        import http.server

        self.root = root
        self.trickle = False
        self.trickling = 0
        self.trickled = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer._relay(self, b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) \
                    if "chunked" not in (self.headers.get("Transfer-Encoding") or "") else self._chunked()
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip
                    body = gzip.decompress(body)
                if outer.trickle and b"0009done\n" in body:
                    outer._dribble(self)
                else:
                    outer._relay(self, body)

            def _chunked(self):
                out = b""
                while True:
                    n = int(self.rfile.readline().split(b";")[0], 16)
                    if n == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(n)
                    self.rfile.readline()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def _relay(self, h, body):
        path, _, query = h.path.partition("?")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": self.root,
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": h.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": h.headers.get("Content-Type") or "", "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": h.headers.get("Git-Protocol") or ""}
        r = subprocess.run([HTTP_BACKEND], input=body, capture_output=True, env=env, timeout=120)
        head, _, payload = r.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(payload)
        h.close_connection = True

    def _dribble(self, h):
        def pkt(data):
            return b"%04x" % (len(data) + 4) + data

        def chunk(data):
            h.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            h.wfile.flush()

        with self._lock:
            self.trickling += 1
            self.trickled += 1
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/x-git-upload-pack-result")
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("Cache-Control", "no-cache")
            h.end_headers()
            chunk(pkt(b"NAK\n"))
            n = 0
            while not self._stop.wait(1.0):
                n += 1
                chunk(pkt(b"\x02Counting objects: %d\r" % n))
        except OSError:
            pass  # the client gave up
        finally:
            with self._lock:
                self.trickling -= 1
            h.close_connection = True

    def stop(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
