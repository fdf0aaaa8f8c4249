"""The proxy between Jupyter and evcxr_jupyter (the kernel launcher, kernel.py, runs it).

Jupyter connects to the launcher, not to evcxr_jupyter: the launcher writes a connection file
of its own for evcxr (new ports; the same key, so every message keeps its signature) and this
proxy passes every message on, both ways, on all five channels. It changes three things,
through two environment variables that evcxr's child process (the one that runs the cells, and
so mnist_lab) inherits: MNIST_LAB_STOP_FILE, the path of a stop file private to the kernel, and
MNIST_LAB_LIVE=1, which tells the crate that marker lines will be understood:

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
  itself never reaches the notebook. evcxr 0.22 reads the cells' stdout line by line and
  sends each line as a stream message of its own (evcxr's child_process.rs, `lines()`;
  evcxr_jupyter's `pass_output_line`), so a marker line never arrives split across two
  messages; a message of several lines is split here, line by line.
- Shutdown. The launcher ends when evcxr_jupyter ends (after a `shutdown_request`, which it
  passes on), and SIGTERM or SIGINT end evcxr_jupyter and then the launcher.

Cargo's "package collision in the lockfile" (a cell that loads mnist_lab from another copy of
the project than the kernel's build slot pins) becomes one line that says what to do.
Everything else passes through untouched (frames, identities and signatures as they came).
"""

import json
import time
import uuid

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
LOST_VARIABLES = (
    "The stop button had to restart the Rust process: no training loop was running to stop, "
    "so every variable is lost. Run the cells again from the top.\n"
)


def marker_display(line):
    """The display message a marker line stands for, as (msg_type, content); None when `line`
    is not a well-formed marker line (it is then shown as text)."""
    if not line.startswith(MARKER):
        return None
    try:
        marker = json.loads(line[len(MARKER):])
        data = marker["data"]
        if not isinstance(data, dict):
            return None
        display = {"data": data, "metadata": {}, "transient": {"display_id": str(marker["id"])}}
        update = bool(marker.get("update"))
    except (ValueError, KeyError, TypeError):
        return None
    return ("update_display_data" if update else "display_data"), display


def stream_parts(text):
    """A stdout stream's text as the messages to publish instead, in order: ("stream",
    {"name": "stdout", "text": ...}) for the runs of ordinary lines, and a display message for
    each marker line."""
    parts, lines = [], []

    def flush():
        if lines:
            parts.append(("stream", {"name": "stdout", "text": "".join(lines)}))
            lines.clear()

    for line in text.splitlines(keepends=True):
        display = marker_display(line)
        if display is None:
            lines.append(line)
        else:
            flush()
            parts.append(display)
    flush()
    return parts


def split(frames):
    """A wire message's identities, and its header, parent header and content as dicts.

    Frames: identities, `<IDS|MSG>`, signature, header, parent header, metadata, content,
    buffers. Used only to look at a message; a message passed on is passed as it came."""
    at = frames.index(DELIMITER)
    header, parent, _metadata, content = (json.loads(f) for f in frames[at + 2 : at + 6])
    return frames[:at], header, parent, content


class Proxy:
    """Passes Jupyter's messages to evcxr_jupyter and back, with the changes above.

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
            self.displays(parent, content)
            return
        self.front["iopub"].send_multipart(frames)

    def displays(self, parent, content):
        """Publishes a stdout stream message with its marker lines turned into displays, in
        the order the lines came."""
        for msg_type, part in stream_parts(content["text"]):
            self.publish(msg_type, part, parent)

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
