"""Starts evcxr_jupyter for mnist_lab's notebooks and stands between it and Jupyter.

The kernelspec that `cargo xtask setup` writes (.lab/jupyter/kernels/mnist_lab) runs

    .venv/bin/python scripts/labkit kernel {connection_file}

Build slots. evcxr compiles every cell as a crate in a build folder. By default each kernel
gets a fresh temporary folder, so each kernel rebuilds Burn and mnist_lab (minutes) or copies
them out of evcxr's cache (about 20 s, and mnist_lab, a path dependency, is rebuilt anyway).
Instead, this launcher gives each kernel a "slot": a build folder under .lab/evcxr/ that stays
between kernels, so Cargo finds Burn and mnist_lab already built and only compiles the cell.
`cargo xtask setup` builds slot-0 once.

A slot is held with a file lock for the life of the kernel, so two kernels never share one. A
second kernel running at the same time takes slot-1, which starts as a copy of slot-0's build
(seconds, and another 650 MB or so of disk) instead of a build from scratch.

Each slot is a Cargo workspace whose root manifest (copied from .lab/evcxr/template) sets the
profile: the cells at opt-level 0 (they compile in about a second) and every dependency at
opt-level 3 without debug assertions (training runs at release speed). Cargo ignores the
[profile.dev] that evcxr writes into the cell crate's own manifest, so `:opt` has no effect in
this kernel.

Warm-up. Before the notebook's first cell, the kernel warms up: the launcher connects to it as
a second client and runs the warm-up code (warm_up.py: the notebooks' `:dep` and `use` lines
and one `let`, the same code set-up's warm build runs). evcxr then has
built the cell crate and run rust-analyzer over Burn's crates (which it does once per kernel,
to know the types of a cell's variables: about 40 CPU-seconds), so the student's first cell
takes seconds. The kernel shows as busy meanwhile; a cell run during the warm-up waits for it.
MNIST_LAB_WARM_UP=0 turns the warm-up off.

rust-analyzer's crates. rust-analyzer runs inside evcxr_jupyter and loads every crate that
`cargo metadata` lists for the cell crate. Cargo lists more than it builds: an optional
dependency named only in a weak feature (`dep?/feature`, which Burn uses for each of its
backends) is in the lockfile and in `cargo metadata`, though never built. For mnist_lab that
is 683 crates with 283 MB of sources (Burn's CUDA, ROCm, wgpu and LibTorch backends, its
training dashboard, an SQL engine...), where Cargo builds 230 (89 MB), and rust-analyzer
held 4.0 GB after the warm-up instead of 1.6 GB. So evcxr_jupyter runs with a Cargo home of
its own, .lab/evcxr/cargo-home: the user's Cargo home through symbolic links, except
`bin/cargo`, the `cargo` that rust-analyzer runs (evcxr builds with the toolchain's own). That
one is this package (`labkit cargo`): for `cargo metadata` on a build slot's crate it drops the
packages that `cargo tree` does not list (everything else goes to the real cargo untouched).
Cargo rebuilds a registry crate when its source path changes, so every slot is built with this
Cargo home (set-up builds slot-0 through a kernel too). Not on Windows (the link is a shell
script), where rust-analyzer sees every crate.

The proxy. Jupyter connects to this launcher, not to evcxr_jupyter: the launcher writes a
connection file of its own for evcxr (new ports; the same key, so every message keeps its
signature) and passes every message on, both ways, on all five channels. It changes three
things, through two environment variables that evcxr's child process (the one that runs the
cells, and so mnist_lab) inherits: MNIST_LAB_STOP_FILE, the path of a stop file private to the
kernel, and MNIST_LAB_LIVE=1, which tells the crate that marker lines will be understood:

- The stop button (`interrupt_request`). evcxr answers it by killing the process that holds
  every variable. The proxy instead creates the stop file; mnist_lab's loops (`train`,
  `evaluate`) check for it once per step, remove it and return early with what they have. When
  the file is gone within STOP_WAIT seconds, the proxy answers the interrupt itself and evcxr
  never sees it. When it is not (a student's own loop, a `sleep`), the proxy removes it, passes
  the interrupt to evcxr as before, and says in the cell that the variables are lost. An
  interrupt while the kernel is idle does nothing.
- Live displays. A stdout line `MNIST_LAB_DISPLAY {"id":..,"update":..,"data":{..}}` from the
  crate becomes a `display_data` (or, with "update": true, an `update_display_data`) with that
  display id, so a progress bar and a loss chart redraw in place while a cell trains. The line
  itself never reaches the notebook.
- Shutdown. The launcher ends when evcxr_jupyter ends (after a `shutdown_request`, which it
  passes on), and SIGTERM or SIGINT end evcxr_jupyter and then the launcher.

Everything else passes through untouched (frames, identities and signatures as they came).

A moved or copied project. A slot's workspace pins mnist_lab by its absolute path (the
template's `pin` crate). A notebook of another copy of the project loads mnist_lab from another
path, and Cargo would refuse both with "package collision in the lockfile". So each start
points the slot's pin at the mnist_lab of the project the notebook is in (Jupyter starts a
kernel in its notebook's folder): at worst Cargo rebuilds mnist_lab once. Should the message
still come (a `:dep` on yet another copy), the proxy replaces it with one line that says what
to do.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from labkit import PACKAGE
from labkit.warm_up import warm_up_code

MAX_SLOTS = 8
# How long the proxy waits for a crate loop to take the stop file before evcxr's interrupt.
STOP_WAIT = 2.0
MARKER = "MNIST_LAB_DISPLAY "
DELIMITER = b"<IDS|MSG>"
COLLISION = "package collision in the lockfile"
OTHER_COPY = (
    "This kernel loads mnist_lab from two copies of the project at once (the kernel was set up "
    "for one, this notebook uses another). Run `cargo xtask setup` in the project you are "
    "working in, then restart the kernel (Kernel > Restart Kernel).\n"
)
PIN = re.compile(r'(mnist_lab = \{ path = )("(?:[^"\\]|\\.)*")')
LOST_VARIABLES = (
    "The stop button had to restart the Rust process: no training loop was running to stop, "
    "so every variable is lost. Run the cells again from the top.\n"
)


def lock(path):
    """Takes an exclusive lock on `path` without waiting; returns the open file or None."""
    handle = open(path, "a+")
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def real_cargo_home():
    """The user's Cargo home: CARGO_HOME, else ~/.cargo."""
    return Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")


def analyzer_cargo_home(root):
    """Makes (or refreshes) root/cargo-home, the Cargo home evcxr_jupyter runs with (see
    "rust-analyzer's crates" above), and returns it; None on Windows or without cargo."""
    home = root / "cargo-home"
    real = real_cargo_home()
    if os.name == "nt" or real.resolve() == home.resolve():
        return None
    cargo = real / "bin" / "cargo"
    if not cargo.exists():
        found = shutil.which("cargo")
        if not found:
            return None
        cargo = Path(found)
    (home / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("registry", "git"):  # Cargo downloads into these: never into our copy
        (real / name).mkdir(parents=True, exist_ok=True)
    links = [(entry, home / entry.name) for entry in real.iterdir() if entry.name != "bin"]
    if (real / "bin").is_dir():
        links += [
            (entry, home / "bin" / entry.name)
            for entry in (real / "bin").iterdir()
            if entry.name not in ("cargo", "cargo.exe")
        ]
    for target, link in links:
        if not os.path.lexists(link):
            try:
                link.symlink_to(target)
            except FileExistsError:  # another kernel starting at the same time
                pass
    shim = home / "bin" / "cargo"
    text = (
        "#!/bin/sh\n# Written by the kernel launcher (scripts/labkit/kernel.py): the cargo that "
        "rust-analyzer runs.\n"
        f"MNIST_LAB_REAL_CARGO={shlex.quote(str(cargo))} MNIST_LAB_EVCXR_DIR="
        f"{shlex.quote(str(root.resolve()))} exec {shlex.quote(sys.executable)} "
        f"{shlex.quote(str(PACKAGE))} cargo \"$@\"\n"
    )
    if not shim.exists() or shim.read_text() != text:
        fresh = shim.with_name(f"cargo.{os.getpid()}")
        fresh.write_text(text)
        fresh.chmod(0o755)
        os.replace(fresh, shim)
    return home


def cargo_for_analyzer(args):
    """`labkit cargo ARGS`: runs `cargo ARGS` with the real cargo; for `cargo
    metadata` on a crate in a build slot, prints its output without the packages that Cargo
    does not build (that `cargo tree` does not list). On any doubt, the output as it came."""
    cargo = os.environ["MNIST_LAB_REAL_CARGO"]
    manifest = args[args.index("--manifest-path") + 1] if "--manifest-path" in args else "."
    slots = Path(os.environ.get("MNIST_LAB_EVCXR_DIR", "/nonexistent"))
    if (
        args[:1] != ["metadata"]
        or "--no-deps" in args
        or slots not in Path(os.path.abspath(manifest)).parents
    ):
        os.execv(cargo, [cargo, *args])
    metadata = subprocess.run([cargo, *args], stdout=subprocess.PIPE)
    if metadata.returncode != 0:
        return metadata.returncode
    tree = [cargo, "tree", "--edges", "normal,build,dev", "--prefix", "none", "--format", "{p}"]
    valued = {"--manifest-path": "--manifest-path", "--features": "--features",
              "--config": "--config", "--lockfile-path": "--lockfile-path",
              "--filter-platform": "--target", "-Z": "-Z"}
    flags = ("--all-features", "--no-default-features", "--offline", "--locked", "--frozen")
    at = 1
    while at < len(args):
        if args[at] in valued and at + 1 < len(args):
            tree += [valued[args[at]], args[at + 1]]
            at += 1
        elif args[at] in flags or args[at].startswith("-Z"):
            tree.append(args[at])
        at += 1
    listed = subprocess.run(tree, capture_output=True, text=True)
    try:
        data = json.loads(metadata.stdout)
        built = {tuple(line.split()[:2]) for line in listed.stdout.splitlines()}
        members = set(data["workspace_members"])
        keep = {
            p["id"] for p in data["packages"]
            if (p["name"], "v" + p["version"]) in built or p["id"] in members
        }
        if listed.returncode != 0 or not data.get("resolve") or len(keep) <= len(members):
            raise ValueError("nothing to go by")
        data["packages"] = [p for p in data["packages"] if p["id"] in keep]
        nodes = [n for n in data["resolve"]["nodes"] if n["id"] in keep]
        for node in nodes:
            node["deps"] = [d for d in node["deps"] if d["pkg"] in keep]
            node["dependencies"] = [d for d in node["dependencies"] if d in keep]
        data["resolve"]["nodes"] = nodes
        sys.stdout.write(json.dumps(data))
    except (ValueError, KeyError, TypeError):
        sys.stdout.buffer.write(metadata.stdout)
    return 0


def notebook_project(default):
    """The project whose notebook this kernel runs: the first folder, from the kernel's working
    folder (Jupyter starts a kernel in its notebook's folder) upwards, that holds
    mnist_lab/Cargo.toml; else `default`, the project that set this kernel up."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "mnist_lab" / "Cargo.toml").is_file():
            return folder.resolve()
    return default


def prepare(slot, template, first, project):
    """Fills a new slot from the template and, when slot-0 is built, from slot-0's build, with
    the pin pointing at `project`'s mnist_lab."""
    for name in ("Cargo.toml", "pin"):
        source, target = template / name, slot / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    pin = slot / "pin" / "Cargo.toml"
    if pin.exists():
        here = json.dumps(str(project / "mnist_lab"))
        text = pin.read_text()
        moved = PIN.sub(lambda m: m.group(1) + here, text)
        if moved != text:
            pin.write_text(moved)
    lockfile = first / "Cargo.lock" if (first / "Cargo.lock").exists() else template / "Cargo.lock"
    if not (slot / "Cargo.lock").exists() and lockfile.exists():
        shutil.copy2(lockfile, slot / "Cargo.lock")
    built = first / "kernel" / "target"
    target = slot / "kernel" / "target"
    if slot != first and built.is_dir() and not target.exists():
        print(f"mnist_lab kernel: copying slot-0's build into {slot.name}", file=sys.stderr)
        # The cell crate's incremental state is of no use to another slot.
        shutil.copytree(
            built,
            target,
            symlinks=True,
            ignore=lambda _dir, names: [n for n in names if n == "incremental"],
        )


def warm_up(connection_file, project, log):
    """Runs the warm-up code in the new kernel, connected straight to evcxr_jupyter, and notes
    the outcome in the slot's warm-up.log (when it fails, the notebook's own first cell shows
    why)."""
    try:
        from jupyter_client import BlockingKernelClient

        code = warm_up_code(project)
        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            msg_id = client.execute(code, store_history=False)
            while True:
                reply = client.get_shell_msg(timeout=3600)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            outcome = f"warm-up {reply['content'].get('status')}"
        finally:
            client.stop_channels()
    except Exception as error:  # the kernel works without a warm-up, only slower at first
        outcome = f"no warm-up ({type(error).__name__}: {error})"
    # Not to stderr: evcxr_jupyter passes what appears there into the next cell's output.
    log.write_text(outcome + "\n")


def split(frames):
    """A wire message's identities, and its header, parent header and content as dicts.

    Frames: identities, `<IDS|MSG>`, signature, header, parent header, metadata, content,
    buffers. Used only to look at a message; a message passed on is passed as it came."""
    at = frames.index(DELIMITER)
    header, parent, _metadata, content = (json.loads(f) for f in frames[at + 2 : at + 6])
    return frames[:at], header, parent, content


class Proxy:
    """Passes Jupyter's messages to evcxr_jupyter and back, with the three changes above.

    `front` holds the sockets Jupyter connects to (bound on the ports of Jupyter's connection
    file), `back` the sockets that connect to evcxr_jupyter (the ports of our own file). One
    thread, one poll loop: a message is passed on as soon as it comes, in order per channel."""

    def __init__(self, jupyter, evcxr, kernel, stop_file, log):
        import zmq
        from jupyter_client.session import Session

        self.zmq, self.kernel, self.stop_file, self.log = zmq, kernel, stop_file, log
        # Signs the messages the proxy makes itself, with the key both sides share.
        self.session = Session(
            key=jupyter["key"].encode(),
            signature_scheme=jupyter.get("signature_scheme", "hmac-sha256"),
            username="kernel",
        )
        self.context = zmq.Context()

        def url(info, channel):
            return f"{info['transport']}://{info['ip']}:{info[channel + '_port']}"

        def bind(kind, channel):
            socket = self.context.socket(kind)
            socket.linger = 1000
            socket.bind(url(jupyter, channel))
            return socket

        def connect(kind, channel, identity=None):
            socket = self.context.socket(kind)
            socket.linger = 1000
            if identity:
                socket.identity = identity
            socket.connect(url(evcxr, channel))
            return socket

        self.front = {
            "shell": bind(zmq.ROUTER, "shell"),
            "control": bind(zmq.ROUTER, "control"),
            "stdin": bind(zmq.ROUTER, "stdin"),
            "iopub": bind(zmq.PUB, "iopub"),
            "hb": bind(zmq.REP, "hb"),
        }
        # evcxr sends an `input_request` on stdin to the identity that sent the cell on shell,
        # so our shell and stdin sockets go by the same identity (as a Jupyter client's do).
        identity = f"mnist-lab-proxy-{uuid.uuid4()}".encode()
        self.back = {
            "shell": connect(zmq.DEALER, "shell", identity),
            "control": connect(zmq.DEALER, "control"),
            "stdin": connect(zmq.DEALER, "stdin", identity),
            "iopub": connect(zmq.SUB, "iopub"),
        }
        self.back["iopub"].setsockopt(zmq.SUBSCRIBE, b"")
        # Asks evcxr for kernel_info until its answer's status shows on our iopub socket, so
        # no status of Jupyter's first request is published before we subscribe.
        self.probe = connect(zmq.DEALER, "shell")
        self.probe_ids = set()  # the probes' msg_ids: their outputs are dropped
        self.probed = False  # a probe's status came through
        self.ready = False  # Jupyter's requests pass

        self.state = "starting"  # evcxr's last execution_state on iopub
        self.executing = 0  # execute_requests passed on and not answered yet
        self.cell = None  # header of the request of the cell running (for our own messages)
        self.interrupts = []  # interrupt_requests waiting for the stop file to be taken
        self.deadline = 0.0
        self.told = set()  # cells told about two copies of mnist_lab

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stopping):
        """Passes messages until evcxr_jupyter exits (or `stopping` is set); returns its
        exit status."""
        zmq = self.zmq
        poller = zmq.Poller()
        for socket in (*self.back.values(), self.probe, self.front["hb"]):
            poller.register(socket, zmq.POLLIN)
        sockets = {id(s): (side, name) for side, group in (("front", self.front), ("back", self.back))
                   for name, s in group.items()}
        next_probe = 0.0
        while not stopping.is_set() and self.kernel.poll() is None:
            now = time.monotonic()
            if not self.ready and now >= next_probe:
                self.send_probe()
                next_probe = now + 1.0
            for socket, _ in poller.poll(50):
                frames = socket.recv_multipart()
                if socket is self.probe:
                    continue  # the answer to a probe: nobody asked for it
                side, name = sockets[id(socket)]
                try:
                    self.handle(side, name, frames)
                except ValueError as error:  # not a Jupyter message: dropped, and noted
                    self.note(f"{side} {name}: message dropped ({error})")
            if not self.ready and self.probed:
                # evcxr is up and our iopub subscription works: from now on Jupyter's requests
                # (queued in the front sockets meanwhile) pass.
                self.ready = True
                for name in ("shell", "control", "stdin"):
                    poller.register(self.front[name], zmq.POLLIN)
            if self.interrupts:
                self.check_stop()
        self.drain()
        return self.kernel.poll()

    def drain(self):
        """Passes on what evcxr sent last (its shutdown_reply, the last outputs)."""
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            busy = False
            for name in ("control", "shell", "iopub", "stdin"):
                try:
                    frames = self.back[name].recv_multipart(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    continue
                busy = True
                self.handle("back", name, frames)
            if not busy:
                time.sleep(0.02)

    def send_probe(self):
        msg = self.session.msg("kernel_info_request", {})
        self.probe_ids.add(msg["header"]["msg_id"])
        self.session.send(self.probe, msg)

    def handle(self, side, name, frames):
        if name == "hb":
            self.front["hb"].send_multipart(frames)  # the heartbeat: an echo
        elif side == "back" and name == "iopub":
            self.from_iopub(frames)
        elif side == "back":
            if name == "shell" and split(frames)[1].get("msg_type") == "execute_reply":
                self.executing = max(0, self.executing - 1)
            self.front[name].send_multipart(frames)
        else:
            msg_type = split(frames)[1].get("msg_type")
            if name == "control" and msg_type == "interrupt_request":
                self.interrupt(frames)
                return
            if name == "shell" and msg_type == "execute_request":
                self.executing += 1
            self.back[name].send_multipart(frames)

    # -- iopub: state, live displays ----------------------------------------------------------

    def from_iopub(self, frames):
        _, header, parent, content = split(frames)
        msg_type = header.get("msg_type")
        if parent.get("msg_id") in self.probe_ids:
            self.probed = True  # the subscription works; the probe's outputs stay unpublished
            return
        if msg_type == "status":
            self.state = content.get("execution_state", self.state)
            if self.state == "idle":
                # A cell that ended while a stop was pending, or a stop file nobody took.
                self.stop_file.unlink(missing_ok=True)
                if self.interrupts:
                    self.check_stop()
        elif msg_type == "execute_input":
            self.cell = parent
        elif msg_type in ("stream", "error") and COLLISION in json.dumps(content):
            # Cargo's message, which a student cannot act on: one line instead, once a cell.
            if parent.get("msg_id") not in self.told:
                self.told.add(parent.get("msg_id"))
                self.publish("stream", {"name": "stderr", "text": OTHER_COPY}, parent)
            return
        elif (
            msg_type == "stream"
            and content.get("name") == "stdout"
            and MARKER in content.get("text", "")
        ):
            self.displays(header, parent, content)
            return
        self.front["iopub"].send_multipart(frames)

    def displays(self, header, parent, content):
        """Publishes a stdout stream message with its marker lines turned into displays, in
        the order the lines came."""
        text = []

        def flush():
            if text:
                self.publish("stream", {"name": "stdout", "text": "".join(text)}, parent)
                text.clear()

        for line in content["text"].splitlines(keepends=True):
            if not line.startswith(MARKER):
                text.append(line)
                continue
            try:
                marker = json.loads(line[len(MARKER):])
                display = {
                    "data": marker["data"],
                    "metadata": {},
                    "transient": {"display_id": str(marker["id"])},
                }
                update = bool(marker.get("update"))
            except (ValueError, KeyError, TypeError):
                text.append(line)  # not one of ours after all: show it as it is
                continue
            flush()
            self.publish("update_display_data" if update else "display_data", display, parent)
        flush()

    def publish(self, msg_type, content, parent):
        self.session.send(self.front["iopub"], msg_type, content, parent=parent)

    # -- the stop button ----------------------------------------------------------------------

    def interrupt(self, frames):
        identities, msg_list = self.session.feed_identities(frames)
        try:
            request = self.session.deserialize(msg_list)  # checks the signature
        except Exception as error:
            self.note(f"interrupt_request dropped: {error}")
            return
        if self.state != "busy" and not self.executing:
            self.reply(identities, request)  # nothing runs: nothing to stop
            return
        if not self.interrupts:
            self.stop_file.touch()
            self.deadline = time.monotonic() + STOP_WAIT
        self.interrupts.append((identities, request, frames))

    def check_stop(self):
        """Answers the pending interrupts once the stop file is taken (or the cell ended), or,
        after STOP_WAIT, passes the first on to evcxr (which restarts the cells' process)."""
        if not self.stop_file.exists():
            for identities, request, _ in self.interrupts:
                self.reply(identities, request)
            self.interrupts = []
        elif time.monotonic() >= self.deadline:
            self.stop_file.unlink(missing_ok=True)
            (_, _, frames), *others = self.interrupts
            if self.cell is not None:
                self.publish("stream", {"name": "stderr", "text": LOST_VARIABLES}, self.cell)
            self.back["control"].send_multipart(frames)  # evcxr answers this one
            for identities, request, _ in others:
                self.reply(identities, request)
            self.interrupts = []

    def reply(self, identities, request):
        self.session.send(
            self.front["control"], "interrupt_reply", {"status": "ok"}, parent=request,
            ident=identities,
        )

    def note(self, line):
        with open(self.log, "a") as log:
            log.write(line + "\n")

    def close(self):
        self.stop_file.unlink(missing_ok=True)
        self.context.destroy(linger=500)


def own_connection_file(jupyter, path):
    """Writes evcxr's connection file: Jupyter's key, transport and address, new ports."""
    from jupyter_client.connect import write_connection_file

    write_connection_file(
        str(path),
        ip=jupyter["ip"],
        key=jupyter["key"].encode(),
        transport=jupyter["transport"],
        signature_scheme=jupyter.get("signature_scheme", "hmac-sha256"),
    )
    return json.loads(path.read_text())


def serve(slot, project, evcxr, connection_file):
    """Runs evcxr_jupyter in `slot` behind the proxy until it ends; returns its exit status."""
    jupyter = json.loads(Path(connection_file).read_text())
    own = slot / "connection.json"
    own_info = own_connection_file(jupyter, own)
    stop_file = (slot / "stop").resolve()
    stop_file.unlink(missing_ok=True)
    log = slot / "proxy.log"
    log.unlink(missing_ok=True)

    env = dict(os.environ)
    env["EVCXR_TMPDIR"] = str(slot / "kernel")
    cargo_home = analyzer_cargo_home(slot.parent)
    if cargo_home:
        env["CARGO_HOME"] = str(cargo_home)
    env["MNIST_LAB_STOP_FILE"] = str(stop_file)
    env["MNIST_LAB_LIVE"] = "1"
    kernel = subprocess.Popen([evcxr, "--control_file", str(own)], env=env)

    # SIGTERM or SIGINT (Jupyter's fallback when a shutdown_request goes unanswered, or a
    # Ctrl+C in a terminal) end the loop; evcxr_jupyter is then ended the same way.
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    warm_log = slot / "warm-up.log"
    warm_log.unlink(missing_ok=True)
    if os.environ.get("MNIST_LAB_WARM_UP", "1") != "0":
        threading.Thread(
            target=warm_up, args=(str(own), project, warm_log), daemon=True
        ).start()
    else:
        warm_log.write_text("warm-up off (MNIST_LAB_WARM_UP=0)\n")

    proxy = Proxy(jupyter, own_info, kernel, stop_file, log)
    try:
        proxy.run(stopping)
    except Exception as error:  # the proxy failed: end the kernel rather than hang Jupyter
        proxy.note(f"proxy failed: {type(error).__name__}: {error}")
        print(f"mnist_lab kernel: the proxy failed ({error}); see {log}", file=sys.stderr)
    finally:
        if kernel.poll() is None:
            kernel.terminate()
            try:
                kernel.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kernel.kill()
        proxy.close()
        own.unlink(missing_ok=True)
    return kernel.wait()


def main(argv):
    """`labkit kernel CONNECTION_FILE`: takes a free build slot and runs evcxr_jupyter in it
    behind the proxy, until it ends."""
    if len(argv) != 1:
        sys.exit("usage: labkit kernel CONNECTION_FILE")
    root = Path(os.environ["MNIST_LAB_EVCXR_DIR"])
    evcxr = os.environ.get("MNIST_LAB_EVCXR_JUPYTER") or shutil.which("evcxr_jupyter")
    if not evcxr:
        sys.exit("evcxr_jupyter not found: run `cargo xtask setup` again")
    template, first = root / "template", root / "slot-0"
    for n in range(MAX_SLOTS):
        held = lock(root / f"slot-{n}.lock")
        if held is None:
            continue
        slot = root / f"slot-{n}"
        (slot / "kernel").mkdir(parents=True, exist_ok=True)
        project = notebook_project(root.parent.parent)
        # Refresh the workspace manifest on every start so a new setup's profile applies.
        prepare(slot, template, first, project)
        # This process holds the slot's lock until the kernel ends.
        sys.exit(serve(slot, project, evcxr, argv[0]))
    sys.exit(f"mnist_lab kernel: all {MAX_SLOTS} build slots in {root} are in use")
