"""Tests of the kernel proxy in kernel.py, on a real kernel driven through jupyter_client: the
project's kernelspec, evcxr_jupyter, mnist_lab.

    .venv/bin/python scripts/labkit test [-k NAME]... [--no-kernel]

`cargo xtask test` runs them after `cargo test` and before the notebooks (with MNIST_LAB_DATA
set when given `--data`). They need `cargo xtask setup` first. The tests that need no kernel
(test_warm_up.py: every notebook's first cell against the warm-up's lines) run first; with
`--no-kernel`, only they run.

All tests share one kernel, started once (start and warm-up take about a minute on 2 cores),
and run in the order below: the stop-button test that has to restart the Rust process, and
the shutdown, come last. Every wait has a timeout. Exit status 0 when all passed.
"""

import argparse
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from labkit import KERNEL_NAME, PACKAGE, ROOT, jupyter_folder, test_warm_up

STARTUP_TIMEOUT = 900  # a kernel whose slot must be copied or rebuilt takes minutes
CELL_TIMEOUT = 600  # the first cell that loads mnist_lab may compile it
MARKER = "MNIST_LAB_DISPLAY "
LOST = "The stop button had to restart the Rust process"


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


class Kernel:
    """The project's kernel, started through its kernelspec as Jupyter starts it."""

    def __init__(self):
        from jupyter_client import KernelManager

        os.environ.setdefault("JUPYTER_PATH", str(jupyter_folder()))
        self.manager = KernelManager(kernel_name=KERNEL_NAME)
        self.manager.start_kernel(cwd=str(ROOT / "notebooks"))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=STARTUP_TIMEOUT)

    def close(self):
        try:
            self.client.stop_channels()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)

    def interrupt(self):
        """Sends interrupt_request on the control channel, as JupyterLab's stop button does;
        returns its msg_id."""
        msg = self.client.session.msg("interrupt_request", {})
        self.client.control_channel.send(msg)
        return msg["header"]["msg_id"]

    def run(self, code, timeout=CELL_TIMEOUT, interrupt_after=None):
        """Executes `code`; returns what came back: `messages` (the cell's iopub messages, with
        the time each arrived), `reply` (execute_reply), and, when `interrupt_after` seconds
        after the cell's first output an interrupt was sent, `interrupted` (when), and
        `interrupt_reply` with `interrupt_replied` (when)."""
        client = self.client
        msg_id = client.execute(code)
        result = {"messages": [], "reply": None, "interrupt_reply": None}
        started, first_output, idle = time.monotonic(), None, False
        interrupt_id = None
        while not (idle and result["reply"] and (interrupt_id is None or result["interrupt_reply"])):
            now = time.monotonic()
            expect(now - started < timeout, f"no answer within {timeout} s to:\n{code}")
            if interrupt_after is not None and interrupt_id is None and first_output is not None:
                if now - first_output >= interrupt_after:
                    interrupt_id = self.interrupt()
                    result["interrupted"] = time.monotonic()
            try:
                msg = client.get_iopub_msg(timeout=0.05)
                if msg["parent_header"].get("msg_id") == msg_id:
                    msg["time"] = time.monotonic()
                    result["messages"].append(msg)
                    kind = msg["msg_type"]
                    if kind in ("stream", "display_data") and first_output is None:
                        first_output = msg["time"]
                    if kind == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True
            except queue.Empty:
                pass
            for get, key in ((client.get_shell_msg, "reply"), (client.get_control_msg, "interrupt_reply")):
                try:
                    msg = get(timeout=0)
                except queue.Empty:
                    continue
                if key == "reply" and msg["parent_header"].get("msg_id") == msg_id:
                    result["reply"], result["replied"] = msg, time.monotonic()
                elif key == "interrupt_reply" and msg["parent_header"].get("msg_id") == interrupt_id:
                    result["interrupt_reply"], result["interrupt_replied"] = msg, time.monotonic()
        return result


def shell_reply(client, msg_id, timeout):
    """The shell reply to `msg_id` (replies to earlier requests, such as the kernel_info
    requests of wait_for_ready, are skipped)."""
    end = time.monotonic() + timeout
    while True:
        reply = client.get_shell_msg(timeout=max(0.01, end - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def of_type(result, *kinds):
    return [m for m in result["messages"] if m["msg_type"] in kinds]


def stdout(result, name="stdout"):
    return "".join(m["content"]["text"] for m in of_type(result, "stream") if m["content"]["name"] == name)


def plain(result):
    """The text/plain of the cell's execute_result, if any."""
    results = of_type(result, "execute_result")
    return results[0]["content"]["data"].get("text/plain") if results else None


def ok(result, code=""):
    status = result["reply"]["content"]["status"]
    errors = [f"{m['content'].get('ename')}: {m['content'].get('evalue')}" for m in of_type(result, "error")]
    expect(status == "ok", f"cell ended with {status}: {errors} {stdout(result, 'stderr')}\n{code}")
    return result


# -- the tests, in the order they run ---------------------------------------------------------

def test_round_trip(kernel, report):
    """Requests and replies pass both ways on shell, iopub and control, unchanged."""
    client = kernel.client
    # Answered after the warm-up (kernel.py), which may rebuild mnist_lab first.
    info = shell_reply(client, client.kernel_info(), STARTUP_TIMEOUT)
    expect(info["content"]["language_info"]["name"] == "Rust", f"not evcxr: {info['content']}")

    started = time.monotonic()
    result = ok(kernel.run('println!("hello from the kernel");\n40 + 2'))
    report(f"a first cell: {time.monotonic() - started:.1f} s")
    expect(stdout(result) == "hello from the kernel\n", f"stdout was {stdout(result)!r}")
    expect(plain(result) == "42", f"execute_result was {plain(result)!r}")

    reply = shell_reply(client, client.is_complete("let x = 1;"), 60)
    expect(reply["content"]["status"] == "complete", f"is_complete_reply: {reply['content']}")
    code = "let some_long_name = 1;\nsome_long_n"
    reply = shell_reply(client, client.complete(code, len(code)), 300)
    expect(reply["content"].get("status") == "ok", f"complete_reply: {reply['content']}")

    # The kernel's process runs with the protocol's variables.
    result = ok(kernel.run('println!("{:?} {:?}", std::env::var("MNIST_LAB_STOP_FILE").ok(), '
                           'std::env::var("MNIST_LAB_LIVE").ok());'))
    found = re.fullmatch(r'Some\("(.+/stop)"\) Some\("1"\)\n', stdout(result))
    expect(found, f"the kernel's environment: {stdout(result)!r}")
    kernel.slot = Path(found.group(1)).parent


def test_display_markers(kernel, report):
    """Marker lines become display_data, then update_display_data, never text."""
    code = r'''
println!("before");
println!("{}", r#"MNIST_LAB_DISPLAY {"id":"proxy-test","update":false,"data":{"text/plain":"first","text/html":"<b>first</b>"}}"#);
std::thread::sleep(std::time::Duration::from_millis(300));
println!("{}", r#"MNIST_LAB_DISPLAY {"id":"proxy-test","update":true,"data":{"text/plain":"second"}}"#);
println!("after");
println!("MNIST_LAB_DISPLAY not json: left as text");
'''
    result = ok(kernel.run(code), code)
    shown = of_type(result, "display_data", "update_display_data")
    expect([m["msg_type"] for m in shown] == ["display_data", "update_display_data"],
           f"displays: {[m['msg_type'] for m in shown]}")
    first, second = (m["content"] for m in shown)
    expect(first["transient"]["display_id"] == "proxy-test" == second["transient"]["display_id"],
           f"display ids: {first.get('transient')}, {second.get('transient')}")
    expect(first["data"] == {"text/plain": "first", "text/html": "<b>first</b>"}, f"{first['data']}")
    expect(second["data"] == {"text/plain": "second"}, f"{second['data']}")
    text = stdout(result)
    expect(text == "before\nafter\nMNIST_LAB_DISPLAY not json: left as text\n", f"stdout was {text!r}")
    kinds = [m["msg_type"] for m in result["messages"] if m["msg_type"] != "status"]
    expect(kinds.index("display_data") > kinds.index("stream"), f"out of order: {kinds}")
    leaked = [m for m in result["messages"] if '"id":"proxy-test"' in json.dumps(m["content"])]
    expect(not leaked, f"a marker line reached the client: {leaked}")


def test_interrupt_when_idle(kernel, report):
    """The stop button on an idle kernel does nothing: the variables stay, no stop file."""
    result = ok(kernel.run('let kept: i32 = 41;\nprintln!("{}", std::env::var("MNIST_LAB_STOP_FILE").unwrap());'))
    stop_file = Path(stdout(result).strip())
    time.sleep(0.5)  # the idle status is in
    started = time.monotonic()
    msg_id = kernel.interrupt()
    reply = kernel.client.get_control_msg(timeout=10)
    took = time.monotonic() - started
    expect(reply["parent_header"]["msg_id"] == msg_id, "interrupt_reply for another request")
    expect(reply["content"]["status"] == "ok", f"interrupt_reply: {reply['content']}")
    expect(took < 1.0, f"the idle interrupt took {took:.2f} s to answer")
    expect(not stop_file.exists(), f"the stop file {stop_file} was left behind")
    report(f"idle interrupt answered in {took * 1000:.0f} ms")
    result = ok(kernel.run("kept + 1"))
    expect(plain(result) == "42", f"`kept` lost: {plain(result)!r}")


def test_interrupt_training(kernel, report):
    """The stop button during `train` ends the cell early and keeps the model and report."""
    setup = """:dep mnist_lab = { path = "../mnist_lab" }
:dep burn = "0.22.1"
use mnist_lab::prelude::*;
let config: TrainingConfig = TrainingConfig::new().with_num_epochs(30);
let device: Device = pick_device(DeviceChoice::Auto)?;
let data: Mnist = Mnist::load()?;
println!("data: {} training images", data.train.len());"""
    ok(kernel.run(setup), setup)
    code = """mnist_lab::train::seed(&device, config.seed);
let model: mnist_lab::models::ConvNet = ConvNetConfig::new(config.hidden_size, config.num_classes).init(&device);
let (model, report): (mnist_lab::models::ConvNet, TrainingReport) = train(model, &data, &config, &device)?;
println!("the cell went on after train");"""
    result = kernel.run(code, interrupt_after=5.0)
    ok(result, code)
    took = result["replied"] - result["interrupted"]
    answered = result["interrupt_replied"] - result["interrupted"]
    expect(result["interrupt_reply"]["content"]["status"] == "ok", f"{result['interrupt_reply']['content']}")
    expect(took <= 3.0, f"the cell ended {took:.2f} s after the interrupt (3 s at most)")
    expect(LOST not in stdout(result, "stderr"), "the process was restarted")
    expect("the cell went on after train" in stdout(result), f"stdout: {stdout(result)[-500:]!r}")
    shown = of_type(result, "display_data")
    updates = of_type(result, "update_display_data")
    expect(any(m["content"].get("transient", {}).get("display_id") for m in shown),
           "no display_data with a display_id during training")
    ids = {m["content"]["transient"]["display_id"] for m in shown if m["content"].get("transient")}
    during = [m for m in updates if m["content"]["transient"]["display_id"] in ids
              and m["time"] < result["interrupted"]]
    expect(during, "no update_display_data for the training display before the interrupt")
    span = during[-1]["time"] - shown[0]["time"]
    report(f"interrupt to cell end {took * 1000:.0f} ms (interrupt_reply after {answered * 1000:.0f} ms); "
           f"{len(updates)} updates in all, {len(during)} in the {span:.1f} s before the stop "
           f"({len(during) / max(span, 1e-9):.2f} per second)")

    result = ok(kernel.run('println!("{:?} {} {}", report.stopped_at, report.steps, data.train.len());'))
    found = re.fullmatch(r"Some\((\d+)\) (\d+) (\d+)\n", stdout(result))
    expect(found, f"report after the stop: {stdout(result)!r}")
    stopped_at, steps, images = (int(g) for g in found.groups())
    per_epoch = -(-images // 100)
    expect(0 < steps < 30 * per_epoch, f"steps {steps} of {30 * per_epoch}: the run was not cut short")
    expect(abs(stopped_at - steps) <= 1, f"stopped_at {stopped_at}, steps {steps}")
    report(f"stopped at step {stopped_at} of {30 * per_epoch}")

    code = 'let accuracy = evaluate(&model, &data, &config, &device)?;\nprintln!("accuracy {accuracy:.1}");'
    result = ok(kernel.run(code), code)
    found = re.search(r"accuracy ([\d.]+)\n", stdout(result))
    expect(found and 0.0 <= float(found.group(1)) <= 100.0, f"evaluate after the stop: {stdout(result)!r}")


def test_interrupt_plain_loop(kernel, report):
    """The stop button during a loop of the student's own: after STOP_WAIT the interrupt
    goes to evcxr (which restarts the Rust process), with one line saying so; the kernel
    works afterwards."""
    code = 'println!("looping");\nloop { std::thread::sleep(std::time::Duration::from_millis(10)); }'
    result = kernel.run(code, timeout=120, interrupt_after=1.0)
    took = result["replied"] - result["interrupted"]
    stderr = stdout(result, "stderr")
    expect(LOST in stderr, f"no message about the restart; stderr: {stderr!r}")
    expect(stderr.count(LOST) == 1, f"the message came {stderr.count(LOST)} times")
    expect(result["interrupt_reply"]["content"]["status"] == "ok", f"{result['interrupt_reply']['content']}")
    expect(2.0 <= took < 10.0, f"the cell ended {took:.2f} s after the interrupt")
    report(f"own loop: cell ended {took:.2f} s after the interrupt, status "
           f"{result['reply']['content']['status']}")
    result = ok(kernel.run("let y: i32 = 2;\ny + 1"))
    expect(plain(result) == "3", f"after the restart: {plain(result)!r}")
    result = kernel.run("kept")
    expect(result["reply"]["content"]["status"] == "error", "`kept` survived a restart of the process")


def copy_of_project(folder):
    """The workspace manifests and mnist_lab's sources, copied into `folder` (no build)."""
    shutil.copy2(ROOT / "Cargo.toml", folder / "Cargo.toml")
    shutil.copytree(ROOT / "mnist_lab", folder / "mnist_lab")
    (folder / "xtask").mkdir()
    shutil.copy2(ROOT / "xtask" / "Cargo.toml", folder / "xtask" / "Cargo.toml")
    shutil.copytree(ROOT / "xtask" / "src", folder / "xtask" / "src")
    return folder


def test_other_copy_message(kernel, report):
    """A cell that loads mnist_lab from another copy of the project than the kernel's build
    folder pins gets one line saying what to do, never Cargo's "package collision" message."""
    with tempfile.TemporaryDirectory() as folder:
        other = copy_of_project(Path(folder))
        code = f':dep mnist_lab = {{ path = {json.dumps(str(other / "mnist_lab"))} }}'
        result = kernel.run(code, timeout=300)
    everything = json.dumps([m["content"] for m in result["messages"]])
    expect("package collision" not in everything, "Cargo's collision message reached the cell")
    expect("cargo xtask setup" in stdout(result, "stderr"),
           f"no line saying what to do; stderr: {stdout(result, 'stderr')!r}")


def test_pin_follows_the_notebook(kernel, report):
    """A slot set up for one copy of the project pins the mnist_lab of the copy whose notebook
    starts the kernel (the launcher's prepare, on a template made for another path)."""
    from labkit import kernel as launcher

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        template, slot, other = folder / "template", folder / "slot-0", folder / "other"
        (template / "pin").mkdir(parents=True)
        (slot / "kernel").mkdir(parents=True)
        (other / "mnist_lab").mkdir(parents=True)
        (other / "mnist_lab" / "Cargo.toml").write_text("[package]\nname = \"mnist_lab\"\n")
        (other / "notebooks").mkdir()
        (template / "Cargo.toml").write_text("[workspace]\n")
        pin = "[target.'cfg(any())'.dependencies]\nmnist_lab = {{ path = {} }}\n"
        (template / "pin" / "Cargo.toml").write_text(pin.format(json.dumps(str(ROOT / "mnist_lab"))))
        here = Path.cwd()
        try:
            os.chdir(other / "notebooks")  # where Jupyter starts a kernel for other's notebooks
            project = launcher.notebook_project(ROOT)
            os.chdir(ROOT / "notebooks")
            own = launcher.notebook_project(folder)
        finally:
            os.chdir(here)
        expect(project == other.resolve(), f"the notebook's project: {project}")
        expect(own == ROOT, f"the kernel's own project's notebooks: {own}")
        launcher.prepare(slot, template, slot, project)
        written = (slot / "pin" / "Cargo.toml").read_text()
        expect(written == pin.format(json.dumps(str(other.resolve() / "mnist_lab"))),
               f"the slot's pin: {written!r}")


def test_analyzer_sees_what_cargo_builds(kernel, report):
    """The `cargo metadata` that rust-analyzer gets through the launcher's Cargo home
    (`labkit cargo`) lists only the packages Cargo builds: an optional dependency
    named only in a weak feature (`log?/std`, as Burn names its backends) is left out for a
    crate in a build slot, and kept, as Cargo lists it, elsewhere. The kernel's
    evcxr_jupyter runs with that Cargo home."""
    import subprocess

    if os.name == "nt":
        report("skipped: the launcher's Cargo home is for Linux and macOS")
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        crates = {
            "a": '[dependencies]\nlog = { version = "0.4", optional = true, '
                 'default-features = false }\n[features]\ndefault = ["std"]\nstd = ["log?/std"]\n',
            "b": '[dependencies]\na = { path = "../a" }\n',
        }
        for name, rest in crates.items():
            (folder / "slot-0" / name / "src").mkdir(parents=True)
            (folder / "slot-0" / name / "src" / "lib.rs").write_text("")
            (folder / "slot-0" / name / "Cargo.toml").write_text(
                f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n{rest}'
            )
        manifest = folder / "slot-0" / "b" / "Cargo.toml"

        def listed(evcxr_dir):
            env = dict(os.environ, MNIST_LAB_REAL_CARGO=shutil.which("cargo"),
                       MNIST_LAB_EVCXR_DIR=str(evcxr_dir))
            out = subprocess.run(
                [sys.executable, str(PACKAGE), "cargo", "metadata",
                 "--format-version", "1", "--manifest-path", str(manifest), "--offline"],
                env=env, capture_output=True, text=True, timeout=300,
            )
            expect(out.returncode == 0, f"cargo metadata through the shim failed: {out.stderr}")
            return sorted(p["name"] for p in json.loads(out.stdout)["packages"])

        expect(listed(folder / "elsewhere") == ["a", "b", "log"],
               f"Cargo's own listing: {listed(folder / 'elsewhere')}")
        expect(listed(folder) == ["a", "b"], f"a build slot's listing: {listed(folder)}")
    if Path("/proc").is_dir():
        launcher = kernel.manager.provisioner.pid
        homes = []
        for process in Path("/proc").iterdir():
            try:
                parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == launcher:  # evcxr_jupyter
                    environ = (process / "environ").read_bytes().decode(errors="replace")
                    homes += [v[len("CARGO_HOME="):] for v in environ.split("\0")
                              if v.startswith("CARGO_HOME=")]
            except (OSError, ValueError, IndexError):
                continue
        home = str(ROOT / ".lab" / "evcxr" / "cargo-home")
        expect(home in homes, f"evcxr_jupyter's CARGO_HOME: {homes}")
        report(f"evcxr_jupyter runs with CARGO_HOME={home}")


def test_shutdown(kernel, report):
    """A shutdown_request ends evcxr_jupyter, and with it the launcher, quickly."""
    slot = getattr(kernel, "slot", None)  # known once test_round_trip ran
    expect(slot is None or (slot / "connection.json").exists(), f"no connection file for evcxr in {slot}")
    started = time.monotonic()
    kernel.client.stop_channels()
    kernel.manager.shutdown_kernel(now=False)
    took = time.monotonic() - started
    expect(not kernel.manager.is_alive(), "the kernel still runs")
    report(f"shutdown took {took:.1f} s")
    expect(took < 5.0, f"shutdown took {took:.1f} s (Jupyter kills a kernel after 5 s)")
    expect(slot is None or not (slot / "connection.json").exists(), f"{slot}/connection.json was left behind")


TESTS = [
    test_round_trip,
    test_display_markers,
    test_interrupt_when_idle,
    test_interrupt_training,
    test_interrupt_plain_loop,
    test_pin_follows_the_notebook,
    test_other_copy_message,
    test_analyzer_sees_what_cargo_builds,
    test_shutdown,
]


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit test", description=__doc__.split("\n")[0])
    parser.add_argument("-k", action="append", help="run only the tests whose name has this")
    parser.add_argument("--no-kernel", action="store_true",
                        help="only the tests that need no kernel (test_warm_up.py)")
    args = parser.parse_args(argv)
    print("labkit test: the tests that need no kernel (test_warm_up.py)", flush=True)
    if not test_warm_up.run():
        print("labkit test: FAILED before the kernel proxy's tests (above)", flush=True)
        return 1
    if args.no_kernel:
        return 0
    tests = [t for t in TESTS if not args.k or any(k in t.__name__ for k in args.k)]
    print(f"kernel proxy: starting a kernel (data: {os.environ.get('MNIST_LAB_DATA', 'the crate cache')})",
          flush=True)
    started = time.monotonic()
    kernel = Kernel()
    print(f"kernel proxy: kernel ready in {time.monotonic() - started:.0f} s", flush=True)
    failed = 0
    try:
        for test in tests:
            began = time.monotonic()
            notes = []
            try:
                test(kernel, notes.append)
                print(f"ok {test.__name__} ({time.monotonic() - began:.1f} s)", flush=True)
            except Exception as error:  # Failure, or a timeout of jupyter_client
                failed += 1
                print(f"FAILED {test.__name__} ({time.monotonic() - began:.1f} s): "
                      f"{type(error).__name__}: {error}", flush=True)
            for note in notes:
                print(f"    {note}", flush=True)
    finally:
        kernel.close()
    print(f"kernel proxy: {len(tests) - failed} passed, {failed} failed "
          f"({time.monotonic() - started:.0f} s in all)")
    return 1 if failed else 0
