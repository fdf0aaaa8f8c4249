"""Tests of the kernel launcher (kernel.py and the modules it runs: slots.py, cargo_shim.py,
proxy.py) on a real kernel driven through jupyter_client: the project's kernelspec,
evcxr_jupyter, mnist_lab.

    .venv/bin/python scripts/labkit test [-k NAME]... [--no-kernel]

`cargo xtask test` runs them after `cargo test` and before the notebooks (with MNIST_LAB_DATA
set when given `--data`). They need `cargo xtask setup` first. The unit tests, which need no
kernel, run first (UNIT_TESTS, every other labkit/test_*.py: among them every notebook's first
cell against the warm-up's lines, the proxy's marker lines, the cargo shim's metadata filter,
build slots made from a template with real Cargo builds); with `--no-kernel`, only they run.

All kernel tests share one kernel, started once (start and warm-up take about a minute on 2
cores), and run in the order below: the stop-button test that has to restart the Rust
process, and the shutdown, come last. Then, that kernel closed, the tests that start kernels of
their own (KERNEL_UNIT_TESTS: test_class.py, a class of two on JupyterHub); `-k` runs only the
kernel tests it names. Every wait has a timeout. The tests check behaviour (what
comes back, in which order, which files are there); the durations they print are for reading
only (the README's figures come from `labkit targets`). Exit status 0 when all passed.
"""

import argparse
import json
import os
import queue
import re
import shutil
import tempfile
import time
from pathlib import Path

import unittest

from labkit import KERNEL_NAME, PACKAGE, ROOT, jupyter_folder

#: The modules of tests that start kernels of their own (unittest), run after the kernel's
#: tests, once their kernel is closed: the class simulation's short version (JupyterHub, two
#: students, one kernel killed).
KERNEL_UNIT_TESTS = ("labkit.test_class",)
#: The modules of tests that need no kernel (unittest), run before the kernel's: every
#: labkit/test_*.py but this one and KERNEL_UNIT_TESTS.
UNIT_TESTS = tuple(f"labkit.{p.stem}" for p in sorted(PACKAGE.glob("test_*.py"))
                   if p.stem != "test_kernel" and f"labkit.{p.stem}" not in KERNEL_UNIT_TESTS)

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
        self._slot = None

    @property
    def slot(self):
        """The kernel's build slot (the folder of its stop file)."""
        if self._slot is None:
            result = ok(self.run('println!("{}", std::env::var("MNIST_LAB_STOP_FILE").unwrap());'))
            self._slot = Path(stdout(result).strip()).parent
        return self._slot

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

    def run(self, code, timeout=CELL_TIMEOUT, interrupt_when=None):
        """Executes `code`; returns what came back: `messages` (the cell's iopub messages, each
        with `seq`, its place among everything received), `reply` (execute_reply, with
        `replied`, its place), and, when an interrupt was sent (as soon as an iopub message
        satisfies `interrupt_when`), `interrupted` (the place of that message),
        `interrupt_reply` and `interrupt_replied`. Durations are kept only to be printed:
        `seconds` maps the same places to time.monotonic()."""
        client = self.client
        msg_id = client.execute(code)
        result = {"messages": [], "reply": None, "interrupt_reply": None, "seconds": {}}
        end, idle, interrupt_id, seq = time.monotonic() + timeout, False, None, 0

        def place(key):
            nonlocal seq
            seq += 1
            result[key] = seq
            result["seconds"][key] = time.monotonic()

        while not (idle and result["reply"] and (interrupt_id is None or result["interrupt_reply"])):
            expect(time.monotonic() < end, f"no answer within {timeout} s to:\n{code}")
            try:
                msg = client.get_iopub_msg(timeout=0.05)
                if msg["parent_header"].get("msg_id") == msg_id:
                    seq += 1
                    msg["seq"] = seq
                    result["messages"].append(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True
                    if interrupt_when is not None and interrupt_id is None and interrupt_when(msg):
                        interrupt_id = self.interrupt()
                        place("interrupted")
            except queue.Empty:
                pass
            for get, key in ((client.get_shell_msg, "reply"), (client.get_control_msg, "interrupt_reply")):
                try:
                    msg = get(timeout=0)
                except queue.Empty:
                    continue
                if key == "reply" and msg["parent_header"].get("msg_id") == msg_id:
                    result["reply"] = msg
                    place("replied")
                elif key == "interrupt_reply" and msg["parent_header"].get("msg_id") == interrupt_id:
                    result["interrupt_reply"] = msg
                    place("interrupt_replied")
        return result

    def took(self, result, start, end):
        """Seconds between two places of a run's result (printed, never checked)."""
        return result["seconds"][end] - result["seconds"][start]


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
    kernel._slot = Path(found.group(1)).parent


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
    """The stop button on an idle kernel does nothing: the proxy answers it, no stop file is
    left, the Rust process keeps its variables."""
    result = ok(kernel.run('let kept: i32 = 41;\nprintln!("{}", std::env::var("MNIST_LAB_STOP_FILE").unwrap());'))
    stop_file = Path(stdout(result).strip())
    started = time.monotonic()
    msg_id = kernel.interrupt()
    reply = kernel.client.get_control_msg(timeout=60)
    report(f"idle interrupt answered in {(time.monotonic() - started) * 1000:.0f} ms")
    expect(reply["parent_header"]["msg_id"] == msg_id, "interrupt_reply for another request")
    expect(reply["content"]["status"] == "ok", f"interrupt_reply: {reply['content']}")
    expect(not stop_file.exists(), f"the stop file {stop_file} was left behind")
    result = ok(kernel.run("kept + 1"))
    expect(plain(result) == "42", f"`kept` lost: {plain(result)!r}")
    expect(LOST not in stdout(result, "stderr"), "the process was restarted")


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
let model = mnist_lab::models::ConvNet::new(config.hidden_size, config.num_classes, &device);
let (model, report): (mnist_lab::models::ConvNet, TrainingReport) = train(model, &data, &config, &device)?;
println!("the cell went on after train");"""
    stop_file = kernel.slot / "stop"
    # The stop button once training runs: at its display's second update.
    updates = iter(range(2))
    result = kernel.run(code, interrupt_when=lambda m: m["msg_type"] == "update_display_data"
                        and next(updates, None) == 1)
    ok(result, code)
    expect(result["interrupt_reply"]["content"]["status"] == "ok", f"{result['interrupt_reply']['content']}")
    # The loop took the stop file and said so; the proxy answered the interrupt itself.
    expect("Stopped at step" in json.dumps([m["content"] for m in result["messages"]]),
           "no `Stopped at step` line from train")
    expect(not stop_file.exists(), f"the stop file {stop_file} was left behind")
    expect(LOST not in stdout(result, "stderr"), "the process was restarted")
    took = kernel.took(result, "interrupted", "replied")
    answered = kernel.took(result, "interrupted", "interrupt_replied")
    expect("the cell went on after train" in stdout(result), f"stdout: {stdout(result)[-500:]!r}")
    shown = of_type(result, "display_data")
    updates = of_type(result, "update_display_data")
    expect(any(m["content"].get("transient", {}).get("display_id") for m in shown),
           "no display_data with a display_id during training")
    ids = {m["content"]["transient"]["display_id"] for m in shown if m["content"].get("transient")}
    during = [m for m in updates if m["content"]["transient"]["display_id"] in ids
              and m["seq"] < result["interrupted"]]
    expect(during, "no update_display_data for the training display before the interrupt")
    report(f"interrupt to cell end {took * 1000:.0f} ms (interrupt_reply after {answered * 1000:.0f} ms); "
           f"{len(updates)} updates in all, {len(during)} before the stop")

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
    """The stop button during a loop of the student's own: nobody takes the stop file, so
    after STOP_WAIT the proxy removes it and passes the interrupt to evcxr (which restarts the
    Rust process), with one line saying so; the kernel works afterwards, without the old
    variables."""
    stop_file = kernel.slot / "stop"
    code = 'println!("looping");\nloop { std::thread::sleep(std::time::Duration::from_millis(10)); }'
    result = kernel.run(code, timeout=300, interrupt_when=lambda m: m["msg_type"] == "stream"
                        and "looping" in m["content"].get("text", ""))
    stderr = stdout(result, "stderr")
    expect(LOST in stderr, f"no message about the restart; stderr: {stderr!r}")
    expect(stderr.count(LOST) == 1, f"the message came {stderr.count(LOST)} times")
    lost = next(m["seq"] for m in of_type(result, "stream") if LOST in m["content"]["text"])
    expect(result["interrupted"] < lost, f"the line ({lost}) came before the interrupt ({result['interrupted']})")
    expect(result["interrupt_reply"]["content"]["status"] == "ok", f"{result['interrupt_reply']['content']}")
    expect(not stop_file.exists(), f"the stop file {stop_file} was left behind")
    report(f"own loop: cell ended {kernel.took(result, 'interrupted', 'replied'):.2f} s after the "
           f"interrupt, status {result['reply']['content']['status']}")
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


def test_analyzer_cargo_home(kernel, report):
    """evcxr_jupyter (and so rust-analyzer) runs with the launcher's Cargo home, whose cargo
    filters the metadata of crates in the kernel's build slots (test_cargo_shim.py tests that
    cargo itself)."""
    from labkit.cargo_shim import SLOTS_VARIABLE

    expect(Path("/proc").is_dir(), "this test reads evcxr_jupyter's environment from /proc (Linux)")
    launcher = kernel.manager.provisioner.pid
    found = []
    for process in Path("/proc").iterdir():
        try:
            parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == launcher:  # evcxr_jupyter
                environ = (process / "environ").read_bytes().decode(errors="replace")
                found.append(dict(v.split("=", 1) for v in environ.split("\0") if "=" in v))
        except (OSError, ValueError, IndexError):
            continue
    expect(len(found) == 1, f"{len(found)} children of the launcher")
    home = str(ROOT / ".lab" / "evcxr" / "cargo-home")
    expect(found[0].get("CARGO_HOME") == home, f"evcxr_jupyter's CARGO_HOME: {found[0].get('CARGO_HOME')}")
    expect(found[0].get(SLOTS_VARIABLE) == str(kernel.slot.parent.resolve()),
           f"evcxr_jupyter's {SLOTS_VARIABLE}: {found[0].get(SLOTS_VARIABLE)}")
    shim = (Path(home) / "bin" / "cargo").read_text()
    expect(f"{PACKAGE}" in shim and " cargo " in shim, f"the Cargo home's cargo: {shim!r}")
    report(f"evcxr_jupyter runs with CARGO_HOME={home}")


def test_second_kernel_from_the_template(kernel, report):
    """A second kernel, in a slot folder of its own (MNIST_LAB_SLOTS), gets a slot made from
    the template (this kernel's slot-0 build): its cell runs, Cargo compiled no dependency
    there (every registry crate's compiled file is still a link to the template's, every
    registry crate's fingerprint the template's), and the template's files are unchanged. It
    runs as this user: a whole kernel as another user needs a toolchain that user can run,
    and the linker's lookup (collect2's access()) ignores the capability that test_slots.py's
    other user reads root's private home with; test_slots.py builds as that user."""
    from labkit import second_kernel, slots
    from labkit.test_slots import snapshot

    template = slots.template_slot(ROOT / ".lab" / "evcxr")
    expect(template is not None, "no template build (.lab/evcxr/slot-0): run `cargo xtask setup`")
    before = snapshot(template / "kernel" / "target")
    result = second_kernel.one_run("on", None, template)
    expect(result["status"] == "ok", f"the second kernel's cell: {result}")
    expect("second kernel: batch size 100" in result["output"], f"its output: {result['output']!r}")
    expect(not result["slot"].startswith(str(ROOT)), f"its slot: {result['slot']}")
    registry = result["registry"]
    expect(registry["shared"] > 0 and registry["fingerprints"] > 0, f"nothing shared: {registry}")
    expect(not registry["replaced"], f"compiled again in the new slot: {registry['replaced'][:10]}")
    expect(not registry["changed"], f"fingerprints changed in the new slot: {registry['changed'][:10]}")
    expect(snapshot(template / "kernel" / "target") == before, "the template's files changed")
    report(f"second kernel as {result['user']}: ready {result['ready_s']} s, first cell done "
           f"{result['first_cell_s']} s after its start; {registry['shared']} registry files shared; "
           f"disk (MB) {result['disk_mb']}")


def test_shutdown(kernel, report):
    """A shutdown_request ends evcxr_jupyter, and with it the launcher, by itself: the reply
    comes, the launcher exits with status 0 (not killed) and removes evcxr's connection file."""
    slot = kernel.slot
    expect((slot / "connection.json").exists(), f"no connection file for evcxr in {slot}")
    started = time.monotonic()
    msg_id = kernel.client.shutdown()
    end = time.monotonic() + 60
    while True:
        reply = kernel.client.get_control_msg(timeout=max(0.01, end - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    expect(reply["content"].get("status", "ok") == "ok", f"shutdown_reply: {reply['content']}")
    process = kernel.manager.provisioner.process
    status = process.wait(timeout=60)
    report(f"shutdown took {time.monotonic() - started:.1f} s")
    expect(status == 0, f"the launcher ended with status {status}")
    expect(not (slot / "connection.json").exists(), f"{slot}/connection.json was left behind")


TESTS = [
    test_round_trip,
    test_display_markers,
    test_interrupt_when_idle,
    test_interrupt_training,
    test_interrupt_plain_loop,
    test_other_copy_message,
    test_analyzer_cargo_home,
    test_second_kernel_from_the_template,
    test_shutdown,
]


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit test", description=__doc__.split("\n")[0])
    parser.add_argument("-k", action="append", help="run only the tests whose name has this")
    parser.add_argument("--no-kernel", action="store_true",
                        help="only the tests that need no kernel (UNIT_TESTS)")
    args = parser.parse_args(argv)
    print(f"labkit test: the tests that need no kernel ({', '.join(UNIT_TESTS)})", flush=True)
    suite = unittest.defaultTestLoader.loadTestsFromNames(UNIT_TESTS)
    outcome = unittest.TextTestRunner(verbosity=2).run(suite)
    if not outcome.wasSuccessful() or outcome.skipped:
        print("labkit test: FAILED before the kernel's tests (above)", flush=True)
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
    if not args.k:
        failed += not unit_tests_with_kernels()
    return 1 if failed else 0


def unit_tests_with_kernels():
    """Runs KERNEL_UNIT_TESTS; returns whether they all passed (none skipped)."""
    print(f"labkit test: the tests that start kernels of their own ({', '.join(KERNEL_UNIT_TESTS)})",
          flush=True)
    started = time.monotonic()
    suite = unittest.defaultTestLoader.loadTestsFromNames(KERNEL_UNIT_TESTS)
    outcome = unittest.TextTestRunner(verbosity=2).run(suite)
    print(f"labkit test: {', '.join(KERNEL_UNIT_TESTS)} took {time.monotonic() - started:.0f} s",
          flush=True)
    return outcome.wasSuccessful() and not outcome.skipped
