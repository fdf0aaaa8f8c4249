"""A class, simulated: JupyterHub on this machine, N students running the lecture at once.

    labkit class [--students 5] [--max-steps N] [--kill-one] [--timeout 1800] [--json FILE]

Starts JupyterHub (PyPI `jupyterhub`, from .venv) on the loopback interface only, on free
ports, with its proxy, configurable-http-proxy (npm; `npm install --prefix .lab/node
configurable-http-proxy`, or one on PATH). Then, as an instructor would, it creates the
students through the hub's REST API (a service token with the admin scopes), and every student
at the same time:

1. logs in: asks the hub for a token with a name and the class password (the REST API's
   `POST /hub/api/users/NAME/tokens`, which checks them with the hub's authenticator,
   SharedPasswordAuthenticator);
2. starts a server, and waits until the hub says it is ready;
3. opens the lecture notebook there (jupyter_server's `POST /api/sessions`: the project's
   kernel, in the notebook's folder), and runs its code cells one after the other over the
   kernel's websocket, through the hub's proxy, up to and including the first cell that
   prints the accuracy line (the first trained model).

Each student's server gets a home of its own, a folder under a temporary root that this
command makes and removes. The image's entry point (deploy/image/start.sh) copies the
notebooks into it and links ~/mnist_lab to the project's crate, as on the class server, and
each kernel builds in a slot of its own in that home (MNIST_LAB_SLOTS) made from the one
prebuilt template (MNIST_LAB_TEMPLATE, the project's .lab/evcxr/slot-0; slots.py), so no
dependency is compiled for any student.

A simulation, not the deployment: the servers run as this command's user, each with its own
HOME (JupyterHub's SimpleLocalProcessSpawner), because the Rust toolchain here sits in this
user's private home. The class server runs each student as a system user of their own under
SystemdSpawner (deploy/jupyterhub/jupyterhub_config.py), with a memory limit; what a server
and its kernel need is the same either way.

It reports, per student: the seconds from login to the server's start and to the first
trained model (the accuracy line), the CPU seconds the student's server and kernel used until
then, the peak resident memory (RSS, sampled from /proc every half second) of the student's
server alone and of its kernel's processes (the launcher, evcxr_jupyter with rust-analyzer,
the process that runs the cells, and cargo and rustc while a cell compiles: every process in
a kernel's process group), and whether every
cell succeeded (the notebook checks of `labkit notebooks`); then a total line. The timings
are for reading: nothing here passes or fails on a duration.

`--kill-one`: one student's kernel is killed (SIGKILL to its process group) while one of its
training cells runs; that student's server must stay up and say the kernel died, and every
other student must still finish every cell, with intact outputs.

Bounded: at most 40 students, one --timeout for the whole run, a timeout on every wait. It
always stops what it started, whatever happens (an error, a timeout, Ctrl+C, SIGTERM): the
servers through the hub, then the hub (which stops its proxy), then any process still left
that carries this run's mark in its environment, and it removes its temporary folder. It also
stops early when the machine's available memory falls below --min-available-mb, rather than
let the kernel's out-of-memory killer pick a process.

Linux only (it reads /proc). MNIST_LAB_DATA should name the data folder, as for the notebooks.
Without --max-steps every training run is in full, as a student runs it.
"""

import argparse
import asyncio
import atexit
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from labkit import KERNEL_NAME, LECTURE, PACKAGE, ROOT, evcxr_folder, jupyter_folder

MAX_STUDENTS = 40
#: The environment variable every process of a run carries (the hub's, and through the
#: spawner's environment each server's and kernel's), to find any that outlive the run.
MARK = "MNIST_LAB_CLASS_RUN"
#: Where `npm install --prefix .lab/node configurable-http-proxy` puts the proxy.
LOCAL_PROXY = ROOT / ".lab" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
INSTALL = {
    "jupyterhub": "`.venv/bin/python -m pip install 'jupyterhub>=5.5,<6'`",
    "configurable-http-proxy": "`npm install --prefix .lab/node configurable-http-proxy` "
                               "(or `npm install -g configurable-http-proxy`)",
}
SAMPLE_EVERY = 0.5  # seconds between two memory samples
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: A cell whose code trains (the loop by hand, or `train`): where --kill-one strikes.
TRAINS = re.compile(r"\btrain\(|\.backward\(\)")


class ClassSimError(Exception):
    """Something that keeps the class from running, in one sentence."""


def tools():
    """The hub, its single-user server and the proxy; raises ClassSimError naming how to
    install whatever is missing."""
    bin_folder = Path(sys.executable).parent
    found = {"jupyterhub": bin_folder / "jupyterhub", "singleuser": bin_folder / "jupyterhub-singleuser"}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise ClassSimError(f"{', '.join(missing)} not found in {bin_folder}; install it with "
                            f"{INSTALL['jupyterhub']}")
    proxy = LOCAL_PROXY if LOCAL_PROXY.is_file() else shutil.which("configurable-http-proxy")
    if not proxy:
        raise ClassSimError("configurable-http-proxy (npm) not found in .lab/node or on PATH; "
                            f"install it with {INSTALL['configurable-http-proxy']}")
    found["proxy"] = Path(proxy)
    return found


def free_port():
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lecture_cells(notebook=LECTURE):
    """The notebook's code cells, in order."""
    import nbformat

    return [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]


# -- /proc --------------------------------------------------------------------------------------

def process_table():
    """Every process now: {pid: (ppid, pgid, rss MB, CPU seconds of it and of its children that
    ended)}. CPU time of a process tree is the sum of that over its live processes."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state ppid pgrp session ... utime(12) stime(13) cutime(14) cstime(15)
        # ... rss(22), counted from the state as 0.
        cpu = sum(int(f) for f in fields[11:15]) / TICKS
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[21]) * PAGE / 2**20, cpu)
    return table


def descendants(table, pid):
    """The processes below `pid` in `table` (not `pid` itself)."""
    below, todo = [], [pid]
    children = {}
    for child, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(child)
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    return below


def environ(pid):
    """A process's environment, as a dict (empty when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def marked(mark):
    """The processes (other than this one) whose environment carries this run's mark."""
    return [pid for pid in process_table() if pid != os.getpid() and environ(pid).get(MARK) == mark]


def available_mb():
    """MemAvailable, from /proc/meminfo, in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def load():
    """The 1-, 5- and 15-minute load averages, as a string."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the hub ------------------------------------------------------------------------------------

HUB_CONFIG = """# Written by labkit class (scripts/labkit/class_sim.py) for one simulated class.
c = get_config()  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.pid_file = {root!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {root!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {root!r} + "/cookie_secret"
c.JupyterHub.pid_file = {root!r} + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# Students log in with the class password; only those the instructor created may.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {password!r}
c.Authenticator.allow_existing_users = True

# The instructor's script: a service whose token may create users and start their servers.
c.JupyterHub.services = [{{"name": "class-sim", "api_token": {admin_token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "class-sim",
    "scopes": ["admin:users", "admin:servers", "list:users", "read:users"],
    "services": ["class-sim"],
}}]

# Each student's server runs as this user, with a home of its own (a simulation: the class
# server's SystemdSpawner runs each as a system user of their own).
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {root!r} + "/home/{{username}}"
c.Spawner.cmd = [{start!r}, {singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.environment = {environment!r}
# Each kernel's build slots go in its student's home, made from the one prebuilt template.
c.Spawner.environment["MNIST_LAB_SLOTS"] = lambda spawner: spawner.home_dir + "/.cache/mnist_lab/slots"
c.Spawner.start_timeout = {timeout}
c.Spawner.http_timeout = {timeout}
"""


class Hub:
    """JupyterHub, started in a temporary root with its proxy; `stop` ends it and everything
    it started."""

    def __init__(self, root, mark, environment, timeout):
        self.root, self.mark, self.process = root, mark, None
        found = tools()
        self.port, self.admin_token = free_port(), secrets.token_hex(32)
        self.password = secrets.token_urlsafe(16)
        config = HUB_CONFIG.format(
            port=self.port, hub_port=free_port(), proxy_api_port=free_port(),
            proxy=str(found["proxy"]), proxy_token=secrets.token_hex(32), root=str(root),
            password=self.password, admin_token=self.admin_token,
            start=str(ROOT / "deploy" / "image" / "start.sh"), singleuser=str(found["singleuser"]),
            environment=dict(environment, **{MARK: mark}), timeout=int(timeout),
            # Jupyter refuses to run as root unless told to (CI and these machines run as root).
            args=["--allow-root"] if os.geteuid() == 0 else [],
        )
        (root / "jupyterhub_config.py").write_text(config)
        (root / "home").mkdir()
        self.command = [str(found["jupyterhub"]), "-f", str(root / "jupyterhub_config.py")]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, **{MARK: self.mark})
        # The proxy is a Node program: its folder first, so `node` is the one npm used.
        env["PATH"] = os.pathsep.join([str(Path(shutil.which("node") or "/usr/bin/node").parent),
                                       env.get("PATH", "")])
        self.log = open(self.root / "jupyterhub.log", "wb")
        self.process = subprocess.Popen(self.command, cwd=self.root, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, lines=30):
        try:
            text = (self.root / "jupyterhub.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self):
        """Stops the hub (its cleanup stops the servers and the proxy), then any process of
        this run still left; returns the processes that had to be killed that way."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        left = [(pid, " ".join(cmdline(pid))[:120]) for pid in marked(self.mark)]
        for signum, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            pids = marked(self.mark)
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait
            while pids and time.monotonic() < end:
                pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not zombie(pid)]
                time.sleep(0.2)
        if getattr(self, "log", None):
            self.log.close()
        return left


def zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# -- memory and CPU, sampled --------------------------------------------------------------------

class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds, the memory of each student's server and kernel processes
    (found below the hub by their JUPYTERHUB_USER), the peak of their sum over all students,
    and the machine's available memory; sets `low` when that falls below `floor_mb`."""

    def __init__(self, hub_pid, names, floor_mb):
        super().__init__(daemon=True)
        self.hub_pid, self.floor_mb = hub_pid, floor_mb
        self.servers = {}  # name -> pid of the student's server
        self.peak = {n: {"server": 0.0, "kernel": 0.0, "together": 0.0} for n in names}
        self.now = {n: {"server": 0.0, "kernel": 0.0, "cpu": 0.0} for n in names}
        self.class_peak, self.available_min = 0.0, available_mb()
        self.low, self.halt, self.lock = threading.Event(), threading.Event(), threading.Lock()

    def sample(self):
        table = process_table()
        for pid in descendants(table, self.hub_pid):
            if table[pid][0] == self.hub_pid and pid not in self.servers.values():
                user = environ(pid).get("JUPYTERHUB_USER")
                if user in self.peak:
                    self.servers[user] = pid
        total = 0.0
        with self.lock:
            for name, server in self.servers.items():
                if server not in table:
                    continue
                tree = descendants(table, server)
                # Kernels run in process groups of their own (jupyter_client starts each in a
                # new session); what runs in the server's group (a helper the server starts)
                # counts as the server's.
                kernels = [p for p in tree if table[p][1] != table[server][1]]
                server_mb = sum(table[p][2] for p in [server, *tree] if p not in kernels)
                kernel_mb = sum(table[p][2] for p in kernels)
                cpu = table[server][3] + sum(table[p][3] for p in tree)
                self.now[name] = {"server": server_mb, "kernel": kernel_mb, "cpu": cpu}
                peak = self.peak[name]
                peak["server"] = max(peak["server"], server_mb)
                peak["kernel"] = max(peak["kernel"], kernel_mb)
                peak["together"] = max(peak["together"], server_mb + kernel_mb)
                total += server_mb + kernel_mb
            self.class_peak = max(self.class_peak, total)
            free = available_mb()
            self.available_min = min(self.available_min, free)
        if free < self.floor_mb:
            self.low.set()
        return table

    def run(self):
        while not self.halt.wait(SAMPLE_EVERY):
            try:
                self.sample()
            except Exception as error:  # a sampler that dies must not hide it
                print(f"class: the memory sampler failed: {error!r}", file=sys.stderr, flush=True)
                return

    def current(self, name):
        with self.lock:
            return dict(self.now[name])


# -- one student --------------------------------------------------------------------------------

class Student:
    """One student: logs in, starts a server, runs the lecture's cells over the websocket."""

    def __init__(self, name, hub, cells, sampler, wait):
        self.name, self.hub, self.cells, self.sampler, self.wait = name, hub, cells, sampler, wait
        self.token = None
        self.result = {"name": name, "status": "not started", "cells_ok": 0, "cells_run": 0,
                       "problems": []}
        self.outputs = []  # per cell run: its nbformat outputs
        self.running_cell = None  # (index, when it started) while a cell runs
        self.session = self.kernel_id = None
        self.died = asyncio.Event()

    async def http(self, method, path, body=None, token=None, base=None, ok=(200, 201, 202, 204)):
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        request = HTTPRequest(
            (base or self.hub.url) + path, method=method,
            headers={"Authorization": f"token {token or self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True, request_timeout=self.wait, connect_timeout=self.wait,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code not in ok:
            text = (response.body or b"").decode(errors="replace")[:300]
            raise ClassSimError(f"{method} {path}: HTTP {response.code} {text}")
        return json.loads(response.body) if response.body else None

    async def run(self):
        started = time.monotonic()
        self.result["status"] = "logging in"
        self.token = (await self.http(
            "POST", f"/hub/api/users/{self.name}/tokens", token="-",
            body={"auth": {"username": self.name, "password": self.hub.password},
                  "note": "class simulation"}))["token"]
        self.result["status"] = "starting its server"
        await self.http("POST", f"/hub/api/users/{self.name}/server")
        end = time.monotonic() + self.wait
        while True:
            model = await self.http("GET", f"/hub/api/users/{self.name}")
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                break
            if time.monotonic() > end:
                raise ClassSimError(f"the server was not ready within {self.wait} s: {server}")
            await asyncio.sleep(0.5)
        self.result["server_ready_s"] = round(time.monotonic() - started, 1)
        base = self.hub.url + server["url"].rstrip("/")
        self.result["status"] = "opening the notebook"
        notebook = f"notebooks/{LECTURE.name}"
        session = await self.http("POST", "/api/sessions", base=base, body={
            "path": notebook, "name": LECTURE.name, "type": "notebook", "kernel": {"name": KERNEL_NAME}})
        self.session, self.kernel_id = session["id"], session["kernel"]["id"]
        await self.run_cells(base, started)
        return self.result

    async def run_cells(self, base, started):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect
        from nbformat.v4 import output_from_msg

        from labkit.notebooks import ACCURACY_LINE

        url = base.replace("http://", "ws://") + f"/api/kernels/{self.kernel_id}/channels?session_id={uuid.uuid4().hex}"
        socket_ = await websocket_connect(HTTPRequest(
            url, headers={"Authorization": f"token {self.token}"}, connect_timeout=self.wait,
            request_timeout=self.wait))
        session_id = uuid.uuid4().hex
        try:
            for index, code in enumerate(self.cells):
                self.result["status"] = f"running cell {index}"
                msg_id = uuid.uuid4().hex
                socket_.write_message(json.dumps({
                    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.name,
                               "session": session_id, "version": "5.3",
                               "date": datetime.now(timezone.utc).isoformat()},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": code, "silent": False, "store_history": True,
                                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                }))
                self.running_cell = (index, time.monotonic())
                outputs, reply, idle = [], None, False
                while not (reply and idle):
                    raw = await asyncio.wait_for(socket_.read_message(), self.wait)
                    if raw is None:
                        raise ClassSimError(f"the kernel's websocket closed during cell {index}")
                    msg = json.loads(raw)
                    kind, content = msg.get("msg_type") or msg["header"]["msg_type"], msg.get("content", {})
                    if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                        self.died.set()
                        self.result["status"] = f"its kernel died during cell {index}"
                        self.result["problems"].append(
                            f"cell {index}: the server says the kernel is {content['execution_state']}")
                        return
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    if msg.get("channel") == "shell" and kind == "execute_reply":
                        reply = content
                    elif kind == "status":
                        idle = content.get("execution_state") == "idle"
                    elif kind in ("stream", "display_data", "execute_result", "error"):
                        outputs.append(output_from_msg(msg))
                        if (kind == "stream" and "first_model_s" not in self.result
                                and ACCURACY_LINE.search(content.get("text", ""))):
                            self.result["first_model_s"] = round(time.monotonic() - started, 1)
                            self.result["cpu_s"] = round(self.sampler.current(self.name)["cpu"], 1)
                            self.result["accuracy"] = ACCURACY_LINE.search(content["text"]).group(0)
                self.running_cell = None
                self.outputs.append((code, outputs))
                self.result["cells_run"] = index + 1
                self.result["cells_ok"] += reply.get("status") == "ok"
                if reply.get("status") != "ok":
                    self.result["problems"].append(f"cell {index} ended with {reply.get('status')}")
                if "first_model_s" in self.result:
                    break
            self.result["problems"] += self.check()
            self.result["status"] = "ok" if not self.result["problems"] else "failed"
        finally:
            socket_.close()

    def check(self):
        """The notebook checks of `labkit notebooks` on the cells run (errors, stderr, panics,
        the loss plot, the accuracy line)."""
        from nbformat.v4 import new_code_cell, new_notebook

        from labkit.notebooks import check

        nb = new_notebook(cells=[new_code_cell(code, outputs=outs) for code, outs in self.outputs])
        return check(nb)

    async def stop_kernel(self):
        """Ends this student's kernel (the server's restarter may be starting a new one, and
        refuses until it is up: tried again every 2 s); returns whether it ended."""
        base = self.hub.url + f"/user/{self.name}"
        end = time.monotonic() + self.wait
        while True:
            try:
                await self.http("DELETE", f"/api/sessions/{self.session}", base=base, ok=(204, 404))
                return True
            except ClassSimError:
                if time.monotonic() > end:
                    return False
                await asyncio.sleep(2)

    async def server_answers(self):
        """Whether the student's server still answers (its kernels listed)."""
        try:
            await self.http("GET", "/api/kernels", base=self.hub.url + f"/user/{self.name}")
            return True
        except Exception:
            return False


def kernel_group(sampler, name):
    """The process group of the student's running kernel (its launcher, `labkit kernel`,
    leads one: jupyter_client starts every kernel in a session of its own), and its pids."""
    table = process_table()
    server = sampler.servers.get(name)
    if server is None or server not in table:
        raise ClassSimError(f"{name}'s server process was not found")
    launchers = [p for p in descendants(table, server)
                 if "kernel" in cmdline(p) and any(a.endswith("labkit") for a in cmdline(p))]
    if len(launchers) != 1:
        raise ClassSimError(f"{name} has {len(launchers)} kernel launchers, not one")
    group = table[launchers[0]][1]
    if group != launchers[0] or group == table[server][1]:
        raise ClassSimError(f"{name}'s kernel does not lead a process group of its own")
    return group, [p for p, row in table.items() if row[1] == group]


async def kill_mid_run(victim, sampler, wait):
    """Kills `victim`'s kernel (SIGKILL to its process group) once one of its training cells
    has run for a second; returns what happened, for the report and the test."""
    end = time.monotonic() + wait
    while True:
        running = victim.running_cell
        if running and TRAINS.search(victim.cells[running[0]]) and time.monotonic() - running[1] > 1:
            break
        if victim.result["status"] in ("ok", "failed") or time.monotonic() > end:
            return {"killed": False, "why": f"no training cell ran (status: {victim.result['status']})"}
        await asyncio.sleep(0.1)
    group, pids = kernel_group(sampler, victim.name)
    os.killpg(group, signal.SIGKILL)
    killed = {"killed": True, "cell": running[0], "group": group, "processes": len(pids),
              "after_s": round(time.monotonic() - running[1], 1)}
    try:
        await asyncio.wait_for(victim.died.wait(), wait)
        killed["reported"] = True
    except asyncio.TimeoutError:
        killed["reported"] = False
    killed["left"] = [p for p in pids if Path(f"/proc/{p}").exists() and not zombie(p)]
    killed["server_answers"] = await victim.server_answers()
    # The server's restarter starts the kernel again; the student would now restart it, or
    # close the notebook. Closed here, so that it takes no CPU from the others.
    killed["closed"] = await victim.stop_kernel()
    return killed


# -- the class ----------------------------------------------------------------------------------

def student_environment(max_steps):
    """What every student's server gets: the project, its kernelspec and template, the
    toolchain (its homes named, since HOME is the student's), the data and the step limit."""
    env = {
        "MNIST_LAB_PROJECT": str(ROOT),
        "JUPYTER_PATH": str(jupyter_folder()),
        "MNIST_LAB_TEMPLATE": str(evcxr_folder() / "slot-0"),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
        "CARGO_HOME": os.environ.get("CARGO_HOME", str(Path.home() / ".cargo")),
        "PYTHONPATH": str(PACKAGE.parent),
    }
    for name in ("MNIST_LAB_DATA", "MNIST_LAB_RELEASE_MEMORY", "MNIST_LAB_WARM_UP"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if max_steps:
        env["MNIST_LAB_MAX_STEPS"] = str(max_steps)
    return env


async def wait_for_hub(hub, wait):
    """Waits until the hub answers through its proxy; raises with its log when it ends first."""
    from tornado.httpclient import AsyncHTTPClient

    end = time.monotonic() + wait
    while True:
        if hub.process.poll() is not None:
            raise ClassSimError(f"jupyterhub ended with status {hub.process.returncode}:\n{hub.log_tail()}")
        try:
            response = await AsyncHTTPClient().fetch(hub.url + "/hub/api/", request_timeout=5, raise_error=False)
            if response.code == 200:
                return
        except OSError:
            pass
        if time.monotonic() > end:
            raise ClassSimError(f"the hub did not answer within {wait} s:\n{hub.log_tail()}")
        await asyncio.sleep(0.5)


def sampled(student, sampler):
    """The student's result with its memory figures: the peaks, and the memory now."""
    now = sampler.current(student.name)
    student.result.update(server_end_mb=round(now["server"]), kernel_end_mb=round(now["kernel"]))
    student.result.update({f"{k}_peak_mb": round(v) for k, v in sampler.peak[student.name].items()})
    return student.result


async def lesson(hub, names, cells, sampler, kill_one, wait, students):
    """Creates the students (into the list `students`, so that a run cut short still has
    them), runs them all at once (and the kill); returns (results, kill)."""
    admin = Student("instructor", hub, cells, sampler, wait)
    admin.token = hub.admin_token
    await admin.http("POST", "/hub/api/users", body={"usernames": names})
    students += [Student(name, hub, cells, sampler, wait) for name in names]

    async def one(student):
        try:
            await student.run()
        except Exception as error:
            student.result["problems"].append(f"{type(error).__name__}: {error}")
            student.result["status"] = f"failed while {student.result['status']}"
        return student.result

    tasks = [asyncio.ensure_future(one(s)) for s in students]
    kill = None
    if kill_one:
        kill = await kill_mid_run(students[-1], sampler, wait)
    await asyncio.gather(*tasks)
    results = [sampled(student, sampler) for student in students]
    await asyncio.gather(*(dismiss(admin, s) for s in students))
    return results, kill


async def dismiss(admin, student):
    """The end of the lesson for one student: the notebook closed (its kernel shut down through
    the server), then the server stopped through the hub; waits until the hub says it has."""
    if student.session:
        await student.stop_kernel()
    await admin.http("DELETE", f"/hub/api/users/{student.name}/server", ok=(202, 204, 400))
    end = time.monotonic() + admin.wait
    while (await admin.http("GET", f"/hub/api/users/{student.name}")).get("servers"):
        if time.monotonic() > end:
            raise ClassSimError(f"{student.name}'s server did not stop within {admin.wait} s")
        await asyncio.sleep(0.5)


def simulate(students=5, max_steps=None, kill_one=False, timeout=1800, wait=None,
             min_available_mb=1024, keep_log=None):
    """Runs one simulated class (see the module's docs); returns its report as a dict:
    `students` (one dict each), `kill` (with kill_one), `total`, `left_behind` (processes the
    orderly shutdown left, which were then killed), `root_removed`, and `stopped` (why) when
    the memory floor or the timeout cut the class short."""
    if not 1 <= students <= MAX_STUDENTS:
        raise ClassSimError(f"--students must be between 1 and {MAX_STUDENTS}, not {students}")
    if kill_one and students < 2:
        raise ClassSimError("--kill-one needs at least 2 students: one to lose, one to check")
    wait = wait or timeout
    tools()
    if not (evcxr_folder() / "slot-0" / "kernel" / "target").is_dir():
        raise ClassSimError("no prebuilt kernel build (.lab/evcxr/slot-0): run `cargo xtask setup`")
    cells = lecture_cells()
    names = [f"student{i + 1:02d}" for i in range(students)]
    root = Path(tempfile.mkdtemp(prefix="labkit-class-"))
    mark = uuid.uuid4().hex
    hub = Hub(root, mark, student_environment(max_steps), wait)
    report = {"students": [], "kill": None, "mark": mark, "load_before": load()}
    started = time.monotonic()

    def cleanup():
        report["left_behind"] = hub.stop()
        if keep_log and (root / "jupyterhub.log").exists():
            shutil.copy2(root / "jupyterhub.log", keep_log)
        shutil.rmtree(root, ignore_errors=True)
        report["root_removed"] = not root.exists()

    atexit.register(cleanup)
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    sampler = None
    try:
        hub.start()
        sampler = Sampler(hub.process.pid, names, min_available_mb)
        sampler.start()

        roster = []

        async def everything():
            await wait_for_hub(hub, min(wait, 120))
            run = asyncio.ensure_future(lesson(hub, names, cells, sampler, kill_one, wait, roster))
            low = asyncio.ensure_future(asyncio.to_thread(sampler.low.wait))
            done, _ = await asyncio.wait({run, low}, timeout=timeout - (time.monotonic() - started),
                                         return_when=asyncio.FIRST_COMPLETED)
            if run in done:
                sampler.low.set()  # ends the waiting thread
                return run.result()
            run.cancel()
            # Cut short: what each student got to, and the reason (the hub and the rest stop
            # below, as always).
            report["stopped"] = (
                f"the machine's available memory fell below {min_available_mb} MB" if low in done
                else f"the class did not finish within --timeout {timeout} s")
            sampler.low.set()
            return [sampled(s, sampler) for s in roster], None

        report["students"], report["kill"] = asyncio.run(everything())
    finally:
        if sampler:
            sampler.halt.set()
            report["class_peak_mb"] = round(sampler.class_peak)
            report["available_min_mb"] = round(sampler.available_min)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        atexit.unregister(cleanup)
        cleanup()
        report["wall_s"] = round(time.monotonic() - started, 1)
        report["load_after"] = load()
    report["total"] = totals(report)
    return report


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def totals(report):
    """The total line's figures."""
    results = report["students"]
    done = [r for r in results if r["status"] == "ok"]
    firsts = [r["first_model_s"] for r in done if "first_model_s" in r]
    return {
        "students": len(results), "ok": len(done),
        "first_model_median_s": round(statistics.median(firsts), 1) if firsts else None,
        "first_model_max_s": max(firsts) if firsts else None,
        "cpu_median_s": round(statistics.median([r["cpu_s"] for r in done]), 1) if done else None,
        "together_peak_median_mb": round(statistics.median([r["together_peak_mb"] for r in done])) if done else None,
        "server_peak_median_mb": round(statistics.median([r["server_peak_mb"] for r in done])) if done else None,
    }


COLUMNS = [("student", "name", "{}"), ("server s", "server_ready_s", "{:.1f}"),
           ("model s", "first_model_s", "{:.1f}"), ("CPU s", "cpu_s", "{:.1f}"),
           ("server MB", "server_peak_mb", "{:,}"), ("kernel MB", "kernel_peak_mb", "{:,}"),
           ("both MB", "together_peak_mb", "{:,}"), ("end MB", None, None), ("cells", None, None),
           ("status", "status", "{}")]


def table(report):
    """The report as text: one line per student, then the totals."""
    lines = ["  ".join(f"{title:>10}" if i else f"{title:<10}" for i, (title, *_) in enumerate(COLUMNS))]
    for r in report["students"]:
        cells = []
        for title, key, form in COLUMNS:
            if title == "end MB":
                value = f"{r.get('server_end_mb', 0) + r.get('kernel_end_mb', 0):,}"
            elif title == "cells":
                value = f"{r['cells_ok']}/{r['cells_run']}"
            else:
                value = form.format(r[key]) if r.get(key) is not None else "-"
            cells.append(f"{value:<10}" if title in ("student", "status") else f"{value:>10}")
        lines.append("  ".join(cells))
        lines += [f"{'':10}  - {p}" for p in r["problems"]]
    t = report["total"]
    lines.append(
        f"total: {t['ok']} of {t['students']} students ok; login to first model median "
        f"{t['first_model_median_s']} s, max {t['first_model_max_s']} s; CPU per student median "
        f"{t['cpu_median_s']} s; server and kernel peak per student median "
        f"{t['together_peak_median_mb']} MB (server alone {t['server_peak_median_mb']} MB); the "
        f"class's peak together {report.get('class_peak_mb')} MB; least memory available "
        f"{report.get('available_min_mb')} MB; {report['wall_s']} s in all; load "
        f"{report['load_before']} before, {report['load_after']} after")
    if report["kill"]:
        lines.append(f"kill: {json.dumps(report['kill'])}")
    if report.get("stopped"):
        lines.append(f"STOPPED before the end: {report['stopped']}")
    lines.append(f"left behind by the hub's shutdown (then killed): {len(report['left_behind'])}; "
                 f"temporary folder removed: {report['root_removed']}")
    lines += [f"  left behind: {pid} {command}" for pid, command in report["left_behind"]]
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit class", description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=5, help=f"how many (1 to {MAX_STUDENTS}; default 5)")
    parser.add_argument("--max-steps", type=int, help="MNIST_LAB_MAX_STEPS for the kernels (default: none, full training)")
    parser.add_argument("--kill-one", action="store_true", help="kill the last student's kernel mid-run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the whole class (default 1800)")
    parser.add_argument("--min-available-mb", type=int, default=1024,
                        help="stop when the machine's available memory falls below (default 1024)")
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--hub-log", help="keep a copy of the hub's log in this file")
    args = parser.parse_args(argv)
    print(f"class: {args.students} students, training steps: {args.max_steps or 'no limit'}, "
          f"data: {os.environ.get('MNIST_LAB_DATA', 'the crate cache')}, load {load()}", flush=True)
    try:
        report = simulate(args.students, args.max_steps, args.kill_one, args.timeout,
                          min_available_mb=args.min_available_mb, keep_log=args.hub_log)
    except ClassSimError as error:
        print(f"class: {error}", file=sys.stderr)
        return 1
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    ok = report["total"]["ok"] == report["total"]["students"] - (1 if args.kill_one else 0)
    return 0 if ok and not report.get("stopped") and not report["left_behind"] and report["root_removed"] else 1
