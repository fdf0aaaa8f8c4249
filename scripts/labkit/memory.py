"""Measures the memory of a notebook kernel: the lecture notebook run several times in one kernel.

    .venv/bin/python scripts/labkit memory [--runs 3] [--max-steps N] [--notebook PATH]
                                           [--speed ROUNDS]

Starts the project's kernel (as `cargo xtask notebooks` does: JUPYTER_PATH=.lab/jupyter, so
run `cargo xtask setup` first), executes every code cell of the notebook `--runs` times in that
one kernel, and after each run prints the resident memory (RSS) of the processes the kernel is
made of:

- `evcxr_jupyter`: the kernel proper, which runs rust-analyzer in process to infer the types
  of a cell's variables;
- its child, the process that runs the cells and holds the variables (and mnist_lab's tensors);
- the launcher (kernel.py), which passes the messages on.

Linux only (it reads /proc). MNIST_LAB_DATA must name the data folder, as for the notebooks.
Without --max-steps every training run is in full, as a student runs it.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager

from labkit import KERNEL_NAME, ROOT, jupyter_folder


def rss_mb(pid):
    """A process's resident memory in MB (from /proc/PID/status), or 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def breakdown(pid):
    """A process's resident memory split as (anonymous MB: heap, stacks; file-backed MB: code
    and data of the program and its libraries; cell libraries mapped), from /proc/PID/smaps.
    evcxr builds each cell as its own library and never unloads one."""
    anon = files = 0.0
    libraries = set()
    path = None
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            fields = line.split()
            if fields and not fields[0].endswith(":"):
                path = fields[5] if len(fields) > 5 else None
                if path and "/kernel/target/" in path and path.endswith(".so"):
                    libraries.add(path)
            elif fields[0] == "Rss:":
                if path and path.startswith("/"):
                    files += int(fields[1]) / 1024
                else:
                    anon += int(fields[1]) / 1024
    except OSError:
        pass
    return anon, files, len(libraries)


def children(pid):
    """The direct children of a process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def name(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def processes(launcher):
    """The launcher, evcxr_jupyter and evcxr's child (the one that runs the cells)."""
    kernel = next((p for p in children(launcher) if name(p).startswith("evcxr")), None)
    child = None
    if kernel:
        child = next((p for p in children(kernel) if name(p) not in ("cargo", "rustc")), None)
    return launcher, kernel, child


def execute(client, code, timeout):
    """Runs `code`; returns its status and its text output (stdout, and any error)."""
    msg_id = client.execute(code, store_history=False)
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    text = []
    while True:  # the cell's outputs, up to its idle status
        msg = client.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "stream":
            text.append(content["text"])
        elif msg["msg_type"] == "error":
            text.append(f"{content['ename']}: {content['evalue']}")
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    return reply["content"]["status"], "".join(text)


# The speed check (--speed): in the kernel that ran the lecture, trains fc and conv2 for a few
# steps with MNIST_LAB_RELEASE_MEMORY on and off in turn. Each round trains once (its end
# releases memory, or not) and then times a second run, which starts after that release.
SPEED_CELL = """
for (name, steps) in [("fc", 300usize), ("conv2", 40)] {
    for round in 0..ROUNDS {
        let on = if round % 2 == 0 { "1" } else { "0" };
        unsafe { std::env::set_var("MNIST_LAB_RELEASE_MEMORY", on) };
        let short = config.clone().with_max_steps(Some(steps));
        let rate = if name == "fc" {
            let fresh = || FcNet::new(784, config.hidden_size, 10, &device);
            train(fresh(), &data, &short, &device)?;
            train(fresh(), &data, &short, &device)?.1.images_per_second
        } else {
            let fresh = || Conv2Net::new(config.hidden_size, 10, &device);
            train(fresh(), &data, &short, &device)?;
            train(fresh(), &data, &short, &device)?.1.images_per_second
        };
        println!("SPEED {name} {on} {rate:.0}");
    }
}
unsafe { std::env::remove_var("MNIST_LAB_RELEASE_MEMORY") };
"""


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit memory", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, help="MNIST_LAB_MAX_STEPS for the kernel")
    lecture = ROOT / "notebooks" / "lecture.ipynb"
    if not lecture.exists():
        lecture = ROOT / "notebooks" / "nonlinearities_and_convolutions.ipynb"
    parser.add_argument("--notebook", default=str(lecture))
    parser.add_argument("--cell-timeout", type=int, default=1800)
    parser.add_argument(
        "--speed", type=int, metavar="ROUNDS",
        help="then time training with MNIST_LAB_RELEASE_MEMORY on and off in turn, ROUNDS rounds",
    )
    args = parser.parse_args(argv)

    os.environ["JUPYTER_PATH"] = str(jupyter_folder())
    if args.max_steps:
        os.environ["MNIST_LAB_MAX_STEPS"] = str(args.max_steps)
    else:
        os.environ.pop("MNIST_LAB_MAX_STEPS", None)
    notebook = Path(args.notebook).resolve()
    cells = [
        c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"
    ]

    manager = KernelManager(kernel_name=KERNEL_NAME)
    manager.start_kernel(cwd=str(notebook.parent))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=3600)
        print(
            f"{'after':<16}{'evcxr_jupyter':>15}{'child':>10}{'launcher':>10}{'total':>10}"
            f"  (MB; child: anonymous + file-backed, cell libraries loaded)"
        )

        def report(label):
            launcher, kernel, child = processes(manager.provisioner.pid)
            sizes = [rss_mb(p) if p else 0.0 for p in (kernel, child, launcher)]
            anon, files, libraries = breakdown(child) if child else (0.0, 0.0, 0)
            print(f"{label:<16}" + "".join(f"{s:>{w},.0f}" for s, w in zip(sizes, (15, 10, 10)))
                  + f"{sum(sizes):>10,.0f}  ({anon:,.0f} + {files:,.0f}, {libraries})", flush=True)

        report("start, warm")
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            failed = []
            for i, code in enumerate(cells):
                status, text = execute(client, code, args.cell_timeout)
                if status != "ok":
                    failed.append(f"cell {i}: {text.strip()[-300:]}")
            report(f"run {run} ({time.monotonic() - started:.0f} s)")
            for line in failed:
                print(f"  did not end ok: {line}", flush=True)
        if args.speed:
            status, text = execute(client, SPEED_CELL.replace("ROUNDS", str(args.speed)),
                                   args.cell_timeout)
            rates = {}
            for line in text.splitlines():
                if line.startswith("SPEED "):
                    _, model, on, rate = line.split()
                    rates.setdefault((model, on), []).append(float(rate))
            for (model, on), values in sorted(rates.items()):
                print(f"{model:<6} release {'on ' if on == '1' else 'off'}: median "
                      f"{statistics.median(values):,.0f} images/s "
                      f"({', '.join(f'{v:,.0f}' for v in values)})", flush=True)
            if status != "ok":
                print(f"  the speed check did not end ok: {text.strip()[-300:]}", flush=True)
            report("speed check")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return 0
