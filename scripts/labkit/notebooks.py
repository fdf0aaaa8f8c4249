"""Executes mnist_lab's notebooks headless on the project's kernel and checks what they show.

Run it through `cargo xtask test` or `cargo xtask notebooks`, which pass the options:

    labkit notebooks [--data DIR] [--max-steps N | --full] [--out DIR] NOTEBOOK.ipynb...
    labkit strip NOTEBOOK.ipynb...     remove outputs before a commit
    labkit warm-up                     build the kernel (the warm-up code), time a fresh one

(`labkit` is `.venv/bin/python scripts/labkit`, which finds the project's kernel from any
folder.)

A notebook fails when
- it is committed with outputs (remove them with `cargo xtask strip`);
- a cell shows an error (a compile error), writes to stderr (where evcxr prints an error
  returned with `?`; cargo's "Compiling ..." lines excepted) or panics ("panicked at", or
  the short message of mnist_lab's panic hook). A cell tagged `raises-exception` must fail
  instead (and without a backtrace), and the notebook goes on;
- a chart shows as text (its Debug form) instead of an image, or a cell whose code ends with
  `loss_chart(&report)?` does not end with that chart (an image as its last output; the live
  progress display that `train` shows while it runs comes before it);
- it does not show what its metadata `mnist_lab.expect` lists, by default
  "loss plot" (an SVG with "Training loss" in it) and "accuracy line"
  ("Accuracy of the network on the N test images: X %"); "text:..." entries must appear in
  some cell's text output; "chart:..." entries in the SVG of a chart shown with its PNG.

A cell tagged `interrupt-after-N` (N seconds) is stopped the way the stop button stops it: the
runner sends the kernel an interrupt N seconds after the cell starts. It must then end
without an error (mnist_lab's `train` stops early and keeps the model).

Executed notebooks are written to --out (for reading, or as CI artifacts).
Exit status: 0 when every notebook passed.
"""

import argparse
import asyncio
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

from labkit import KERNEL_NAME, LECTURE, ROOT, evcxr_folder
from labkit.warm_up import warm_up_code

ACCURACY_LINE = re.compile(r"Accuracy of the network on the \d+ test images: [\d.]+ %")
PANIC_MARKERS = ("panicked at", "The cell stopped here")
# Cargo's progress lines, which evcxr copies to stderr while it builds dependencies.
CARGO_PROGRESS = re.compile(r"^\s*(Compiling|Updating|Locking|Adding|Downloading|Downloaded) ")
DEFAULT_EXPECT = ["loss plot", "accuracy line"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXPECTED_FAILURE_TAG = "raises-exception"
INTERRUPT_TAG = re.compile(r"^interrupt-after-(\d+(?:\.\d+)?)$")
# A training cell that ends by drawing its loss chart.
ENDS_WITH_CHART = re.compile(r"loss_chart\(&\w+\)\?\s*$")
IMAGE_TYPES = ("image/svg+xml", "image/png")


class Client(NotebookClient):
    """nbclient, echoing each cell's text output as it streams in (CI logs show progress)."""

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and not self.quiet:
            text = text_of(out)
            if "data" in out and "image/svg+xml" not in out["data"] and len(text) > 2000:
                text = text[:2000] + f"... ({len(text):,} characters)"
            for line in text.splitlines():
                print(f"    | {line}", flush=True)
            if "data" in out and "image/svg+xml" in out["data"]:
                print(f"    | <svg, {len(out['data']['image/svg+xml']):,} bytes>", flush=True)
        return out


def text_of(output):
    """The text an output shows: stream text, plain-text results, error name and message
    (without colour codes)."""
    return ANSI.sub("", raw_text_of(output))


def raw_text_of(output):
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind == "error":
        return f"{output.get('ename', '')}: {output.get('evalue', '')}\n" + "\n".join(
            output.get("traceback", [])
        )
    data = output.get("data", {})
    return data.get("text/plain", "") if isinstance(data.get("text/plain", ""), str) else ""


def committed_outputs(nb):
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


def seconds(cell):
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    from datetime import datetime

    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def first_line(source):
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("//"):
            return line.strip()[:60]
    return source.strip()[:60]


def check(nb):
    """Problems found in an executed notebook, as sentences."""
    problems, texts, svgs = [], [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        cell_texts = [text_of(o) for o in cell.get("outputs", [])]
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        panics = [m for m in PANIC_MARKERS for t in cell_texts if m in t]
        where = f"cell {i} ({first_line(cell.source)})"
        if EXPECTED_FAILURE_TAG in tags:
            if not (errors or panics):
                problems.append(f"{where} is tagged {EXPECTED_FAILURE_TAG} but did not fail")
        else:
            for error in errors:
                message = " ".join(text_of(error).split())[:400]
                problems.append(f"{where} shows an error: {message}")
            if panics:
                problems.append(f"{where} panicked: {' '.join(''.join(cell_texts).split())[:400]}")
            else:
                # An error returned with `?` is printed to stderr, and evcxr reports the cell
                # as a success: any other line on stderr counts as a failure.
                stderr = [
                    line
                    for o in cell.get("outputs", [])
                    if o.get("output_type") == "stream" and o.get("name") == "stderr"
                    for line in o.get("text", "").splitlines()
                    if line.strip() and not CARGO_PROGRESS.match(line)
                ]
                if stderr:
                    problems.append(f"{where} wrote to stderr: {' '.join(' '.join(stderr).split())[:400]}")
        if EXPECTED_FAILURE_TAG in tags and any("stack backtrace" in t for t in cell_texts):
            problems.append(f"{where} panicked with a backtrace: the panic hook is not installed")
        if any(t.startswith("Chart { svg:") for t in cell_texts):
            problems.append(f"{where} shows a chart as text (its Debug form), not as an image")
        if ENDS_WITH_CHART.search(cell.source) and not errors:
            last = (cell.get("outputs") or [{}])[-1]
            if not any(kind in last.get("data", {}) for kind in IMAGE_TYPES):
                problems.append(f"{where} ends with loss_chart but its last output is not the chart "
                                f"(it is {last.get('output_type', 'missing')})")
        texts.extend(cell_texts)
        for output in cell.get("outputs", []):
            svg = output.get("data", {}).get("image/svg+xml")
            if svg:
                svgs.append(svg if isinstance(svg, str) else "".join(svg))
    charts = [
        ("".join(o["data"]["image/svg+xml"]), "image/png" in o["data"])
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if "image/svg+xml" in o.get("data", {})
    ]
    expect = nb.metadata.get("mnist_lab", {}).get("expect", DEFAULT_EXPECT)
    all_text = "\n".join(texts)
    for item in expect:
        if item == "loss plot":
            if not any("Training loss" in svg for svg in svgs):
                problems.append("no loss plot (an image/svg+xml output with 'Training loss')")
        elif item == "accuracy line":
            if not ACCURACY_LINE.search(all_text):
                problems.append("no accuracy line ('Accuracy of the network on the N test images')")
        elif item.startswith("text:"):
            if item[5:] not in all_text:
                problems.append(f"the output never says {item[5:]!r}")
        elif item.startswith("chart:"):
            # A chart: an SVG holding the words (its title), shown with a PNG of itself.
            if not any(item[6:] in svg and png for svg, png in charts):
                problems.append(f"no chart {item[6:]!r} (an image/svg+xml with it, and an image/png)")
        else:
            problems.append(f"unknown expectation {item!r} in metadata.mnist_lab.expect")
    return problems


def execute(path, args, nb=None, quiet=False):
    """Executes the notebook at `path` (or `nb`, in `path`'s folder, as if it were there);
    returns it."""
    if nb is None:
        nb = nbformat.read(path, as_version=4)
    client = Client(
        nb,
        kernel_name=args.kernel,
        timeout=args.cell_timeout,
        # Starting includes the kernel's warm-up (kernel.py): about a minute,
        # or the whole build of Burn the first time.
        startup_timeout=args.startup_timeout,
        allow_errors=True,
        record_timing=True,
        resources={"metadata": {"path": str(Path(path).resolve().parent)}},
    )
    client.quiet = quiet

    def started(cell, cell_index, **_):
        if cell.cell_type == "code" and not quiet:
            print(f"  [{cell_index}] {first_line(cell.source)}", flush=True)

    stops = {}

    def execute_sent(cell, cell_index, **_):
        """For a cell tagged interrupt-after-N: the stop button, N seconds from now."""
        after = [float(m.group(1)) for tag in cell.get("metadata", {}).get("tags", [])
                 if (m := INTERRUPT_TAG.match(tag))]
        if after:
            def stop():
                print(f"  [{cell_index}] interrupt (the stop button) after {after[0]:g} s", flush=True)
                asyncio.ensure_future(client.km.interrupt_kernel())

            stops[cell_index] = asyncio.get_running_loop().call_later(after[0], stop)

    def executed(cell, cell_index, **_):
        if cell_index in stops:
            stops.pop(cell_index).cancel()  # a cell that ended first is not interrupted
        if not quiet:
            took = seconds(cell)
            print(f"  [{cell_index}] done in {took:.1f} s" if took is not None else "", flush=True)

    client.on_cell_start = started
    client.on_cell_execute = execute_sent
    client.on_cell_executed = executed
    client.execute()
    return nb


def run(path, args):
    """Executes and checks one notebook; returns its problems."""
    path = Path(path)
    problems = []
    dirty = committed_outputs(nbformat.read(path, as_version=4))
    if dirty:
        problems.append(
            f"committed with outputs in cells {dirty}: run `cargo xtask strip` before committing"
        )
    print(f"\n== {path.name}", flush=True)
    started = time.monotonic()
    try:
        nb = execute(path, args)
    except (CellTimeoutError, DeadKernelError, RuntimeError) as error:
        return problems + [f"did not finish: {type(error).__name__}: {error}"], None
    took = time.monotonic() - started
    problems += check(nb)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
    return problems, took


def strip(paths):
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, path)
        print(f"stripped {path}")


def warm_up(args):
    """Set-up's warm build: runs the warm-up code (warm_up.py, what every new kernel runs too)
    in a kernel whose own warm-up is off, so the kernel's dependencies are built in slot-0
    exactly as a notebook gets them; then times a fresh kernel: its start and warm-up, then
    the lecture's first cell."""
    started = time.monotonic()
    nb = new_notebook(cells=[new_code_cell(warm_up_code(ROOT))])
    nb.metadata["kernelspec"] = {"name": args.kernel, "display_name": "", "language": "rust"}
    before = os.environ.get("MNIST_LAB_WARM_UP")
    os.environ["MNIST_LAB_WARM_UP"] = "0"  # the cell is the warm-up: not twice at once
    try:
        nb = execute(LECTURE, args, nb=nb, quiet=True)
    finally:
        if before is None:
            os.environ.pop("MNIST_LAB_WARM_UP")
        else:
            os.environ["MNIST_LAB_WARM_UP"] = before
    problems = [p for p in check(nb) if not p.startswith("no ") and "never says" not in p]
    if problems:
        for problem in problems:
            print(f"warm-up: {problem}")
        return 1
    print(f"setup: dependencies built: {time.monotonic() - started:.0f} s", flush=True)

    nb = nbformat.read(LECTURE, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [cell]
    client = Client(nb, kernel_name=args.kernel, timeout=args.cell_timeout,
                    startup_timeout=args.startup_timeout, allow_errors=True,
                    resources={"metadata": {"path": str(LECTURE.parent)}})
    client.quiet = True
    slots = Path(os.environ.get("MNIST_LAB_EVCXR_DIR", evcxr_folder()))
    started, wall = time.monotonic(), time.time()
    with client.setup_kernel():
        while not any(log.stat().st_mtime >= wall - 1 for log in slots.glob("slot-*/warm-up.log")):
            if time.monotonic() - started > args.startup_timeout:
                break
            time.sleep(0.2)
        ready = time.monotonic() - started
        started = time.monotonic()
        client.execute_cell(cell, 0)
        first = time.monotonic() - started
    print(f"setup: a fresh kernel is ready in {ready:.0f} s (start and warm-up), then runs the "
          f"lecture's first cell in {first:.1f} s", flush=True)
    return 0


def main(command, argv):
    """`labkit notebooks`, `labkit strip` or `labkit warm-up` (see the module's docs)."""
    parser = argparse.ArgumentParser(prog=f"labkit {command}",
                                     description=__doc__.split("\n")[0])
    if command != "warm-up":
        parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--kernel", default=KERNEL_NAME)
    parser.add_argument("--data", help="MNIST folder; sets MNIST_LAB_DATA for the kernel")
    parser.add_argument("--max-steps", type=int, help="sets MNIST_LAB_MAX_STEPS (quick runs)")
    parser.add_argument("--full", action="store_true", help="no step limit")
    parser.add_argument("--out", help="folder for the executed notebooks")
    parser.add_argument("--cell-timeout", type=int, default=1800)
    parser.add_argument("--startup-timeout", type=int, default=3600)
    args = parser.parse_args(argv)

    if command == "strip":
        strip(args.notebooks)
        return 0
    if args.data:
        os.environ["MNIST_LAB_DATA"] = str(Path(args.data).resolve())
    if args.full:
        os.environ.pop("MNIST_LAB_MAX_STEPS", None)
    elif args.max_steps:
        os.environ["MNIST_LAB_MAX_STEPS"] = str(args.max_steps)
    if command == "warm-up":
        return warm_up(args)

    data = os.environ.get("MNIST_LAB_DATA", "the crate's cache (downloading if needed)")
    steps = os.environ.get("MNIST_LAB_MAX_STEPS", "no limit")
    print(f"notebooks: data {data}; training steps per run: {steps}")
    passed, failed, total = 0, 0, time.monotonic()
    for path in args.notebooks:
        problems, took = run(path, args)
        name = Path(path).name
        if problems:
            failed += 1
            print(f"FAILED {name}" + (f" ({took:.0f} s)" if took else ""))
            for problem in problems:
                print(f"  - {problem}")
        else:
            passed += 1
            print(f"ok {name} ({took:.0f} s)")
    print(
        f"\nnotebooks: {passed} passed, {failed} failed "
        f"({time.monotonic() - total:.0f} s in all)"
    )
    return 1 if failed else 0
