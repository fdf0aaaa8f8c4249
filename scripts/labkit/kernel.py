"""Starts evcxr_jupyter for mnist_lab's notebooks and stands between it and Jupyter.

The kernelspec that `cargo xtask setup` writes (.lab/jupyter/kernels/mnist_lab) runs

    .venv/bin/python scripts/labkit kernel {connection_file}

which takes a build slot (slots.py: one prebuilt template shared by every kernel, a slot per
running kernel), starts evcxr_jupyter in it with its own Cargo home (cargo_shim.py: the cargo
that rust-analyzer runs sees only the crates Cargo builds), warms the kernel up, and passes
Jupyter's messages to it and back (proxy.py: the stop button, live displays).

Warm-up. Before the notebook's first cell, the kernel warms up: the launcher connects to it as
a second client and runs the warm-up code (warm_up.py: the notebooks' `:dep` and `use` lines
and one `let`, the same code set-up's warm build runs). evcxr then has built the cell crate and
run rust-analyzer over Burn's crates (which it does once per kernel, to know the types of a
cell's variables: about 40 CPU-seconds), so the student's first cell takes seconds. The kernel
shows as busy meanwhile; a cell run during the warm-up waits for it. MNIST_LAB_WARM_UP=0 turns
the warm-up off.

Settings (environment): MNIST_LAB_EVCXR_DIR (the project's .lab/evcxr, from the kernelspec),
MNIST_LAB_EVCXR_JUPYTER, MNIST_LAB_WARM_UP, MNIST_LAB_SLOTS and MNIST_LAB_TEMPLATE (slots.py).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from labkit import cargo_shim, slots
from labkit.proxy import Proxy
from labkit.warm_up import warm_up_code


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


#: What `cargo run` sets for the program it runs (`cargo xtask` is one), which every process
#: started from it inherits: a build script that tracks one (ring's tracks CARGO_MANIFEST_DIR)
#: makes Cargo rebuild it, and all that depends on it, in a kernel started otherwise.
CARGO_RUN_VARIABLES = ("CARGO", "CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME",
                       "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR")


def build_environment(environ):
    """evcxr's environment: this one without what `cargo run` set, so that every kernel
    builds in the same environment, whoever started it (and the template's build stays fresh
    for all)."""
    return {k: v for k, v in environ.items()
            if k not in CARGO_RUN_VARIABLES and not k.startswith("CARGO_PKG_")}


def serve(root, slot, project, evcxr, connection_file):
    """Runs evcxr_jupyter in `slot` behind the proxy until it ends; returns its exit status."""
    jupyter = json.loads(Path(connection_file).read_text())
    own = slot / "connection.json"
    own_info = own_connection_file(jupyter, own)
    stop_file = (slot / "stop").resolve()
    stop_file.unlink(missing_ok=True)
    log = slot / "proxy.log"
    log.unlink(missing_ok=True)

    env = build_environment(os.environ)
    env["EVCXR_TMPDIR"] = str(slot / "kernel")
    cargo_home = cargo_shim.analyzer_cargo_home(root)
    if cargo_home:
        env["CARGO_HOME"] = str(cargo_home)
        env[cargo_shim.SLOTS_VARIABLE] = str(slot.parent.resolve())
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
    if not os.environ.get("MNIST_LAB_EVCXR_DIR"):
        sys.exit("mnist_lab kernel: MNIST_LAB_EVCXR_DIR is not set; start the kernel through "
                 "the kernelspec that `cargo xtask setup` writes")
    root = Path(os.environ["MNIST_LAB_EVCXR_DIR"])
    evcxr = os.environ.get("MNIST_LAB_EVCXR_JUPYTER") or shutil.which("evcxr_jupyter")
    if not evcxr:
        sys.exit("evcxr_jupyter not found: run `cargo xtask setup` again")
    project = slots.notebook_project(root.parent.parent)
    try:
        slot, _held = slots.take(root, project)  # held until the kernel ends
    except (slots.SlotError, OSError) as error:
        sys.exit(f"mnist_lab kernel: {error}")
    sys.exit(serve(root, slot, project, evcxr, argv[0]))
