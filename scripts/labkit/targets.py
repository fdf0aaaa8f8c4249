"""Measures the notebook targets of the README on this machine, after `cargo xtask setup`.

    .venv/bin/python scripts/labkit targets --data DIR

1. first cell: a fresh kernel runs the lecture's first cell (`:dep` lines and the
   hyper-parameters), timed from the cell's start to its end; the kernel's own start-up is
   shown apart.
2. model cell: the lecture's model-1 cell (a struct, its `new` and its `forward`).
3. training compile: the lecture's model-1 training cell, with the training itself timed
   inside the cell; what the cell takes beyond that is compiling and loading it.
4. speed: images per second of training in the notebook (the lecture's own model structs)
   against `mnist-lab train` (the crate's models, a release build) for fc and conv, each the
   best of --repeat runs, taken in turns.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from labkit import KERNEL_NAME, LECTURE, ROOT, evcxr_folder

RATE = re.compile(r"([\d,]+) images/s")


def lecture_cell(marker):
    for cell in nbformat.read(LECTURE, as_version=4).cells:
        if cell.cell_type == "code" and marker in cell.source:
            return cell.source
    sys.exit(f"no cell with {marker!r} in {LECTURE}")


class Kernel:
    def __init__(self):
        nb = new_notebook()
        nb.metadata = {"kernelspec": {"name": KERNEL_NAME, "display_name": "", "language": "rust"}}
        self.nb = nb
        self.client = NotebookClient(
            nb, kernel_name=KERNEL_NAME, timeout=1800, allow_errors=True,
            resources={"metadata": {"path": str(LECTURE.parent)}},
        )

    def __enter__(self):
        started = time.monotonic()
        self._setup = self.client.setup_kernel()
        self._setup.__enter__()
        self.start_seconds = time.monotonic() - started
        # The launcher warms the kernel up (kernel.py) and then writes
        # warm-up.log into the kernel's build slot.
        while not any(log.exists() and log.stat().st_mtime > time.time() - (time.monotonic() - started) - 1
                      for log in evcxr_folder().glob("slot-*/warm-up.log")):
            if time.monotonic() - started > 3600:
                break
            time.sleep(0.2)
        self.ready_seconds = time.monotonic() - started
        self.ready_cpu = self.cpu_seconds()
        return self

    def __exit__(self, *exc):
        return self._setup.__exit__(*exc)

    def cpu_seconds(self):
        """CPU time of the kernel and the builds it waited for (Linux): close to what a cell
        takes on an idle machine, where wall-clock time also counts other people's work."""
        try:
            pid = self.client.km.provisioner.process.pid  # the launcher; evcxr is its child
            children = subprocess.run(["pgrep", "-P", str(pid), "-f", "evcxr_jupyter"],
                                      capture_output=True, text=True).stdout.split()
            pid = int(children[0]) if children else pid
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except (AttributeError, OSError, ValueError):
            return float("nan")

    def run(self, source):
        """Runs a cell; returns (seconds, its text output). Stops on an error.
        self.cpu holds the kernel's CPU seconds for the cell."""
        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        started, cpu = time.monotonic(), self.cpu_seconds()
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        took = time.monotonic() - started
        self.cpu = self.cpu_seconds() - cpu
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        bad = [o for o in cell.outputs if o.get("output_type") == "error" or o.get("name") == "stderr"]
        if bad:
            sys.exit(f"cell failed:\n{source}\n{bad}")
        return took, text


def train_cell(model_expr, epochs):
    return f"""
let timed: TrainingConfig = config.clone().with_num_epochs({epochs}).with_max_steps(None);
let started = std::time::Instant::now();
let (trained, report) = train({model_expr}, &data, &timed, &device)?;
println!("INSIDE {{:.3}} RATE {{:.1}}", started.elapsed().as_secs_f64(), report.images_per_second);
"""


def cli_env():
    """The CLI's environment: MNIST_LAB_CLI_TARGET_DIR, when set, is its CARGO_TARGET_DIR
    (the kernel keeps its own build folders)."""
    env = dict(os.environ)
    if os.environ.get("MNIST_LAB_CLI_TARGET_DIR"):
        env["CARGO_TARGET_DIR"] = os.environ["MNIST_LAB_CLI_TARGET_DIR"]
    return env


def cli_rate(model, epochs, data):
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "mnist_lab_cli", "--", "train",
         "--model", model, "--epochs", str(epochs), "--data", data],
        cwd=ROOT, capture_output=True, text=True, check=True, env=cli_env(),
    ).stdout
    lines = [l for l in out.splitlines() if " done: " in l]
    return sum(float(RATE.search(l).group(1).replace(",", "")) for l in lines) / len(lines)


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit targets", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--repeat", type=int, default=3, help="speed runs per model (0: none)")
    args = parser.parse_args(argv)
    data = str(Path(args.data).resolve())
    os.environ["MNIST_LAB_DATA"] = data
    os.environ.pop("MNIST_LAB_MAX_STEPS", None)

    print("building the CLI (release) for the comparison...", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "mnist_lab_cli"], cwd=ROOT,
                   check=True, env=cli_env())

    results, cpu = {}, {}
    with Kernel() as kernel:
        results["kernel start"] = kernel.start_seconds
        results["kernel ready"] = kernel.ready_seconds
        cpu["kernel ready"] = kernel.ready_cpu
        results["first cell"], _ = kernel.run(lecture_cell(":dep mnist_lab"))
        cpu["first cell"] = kernel.cpu
        kernel.run(lecture_cell("Mnist::load()"))
        results["model cell"], _ = kernel.run(lecture_cell("pub struct NeuralNet"))
        cpu["model cell"] = kernel.cpu
        kernel.run(lecture_cell("pick_device"))
        kernel.run(lecture_cell("pub struct ConvNet"))
        # The lecture's training cell for model 1, timed inside and out (first use of
        # `train` for this model: its compile is what a student waits for).
        took, text = kernel.run(train_cell(
            "NeuralNet::new(config.input_size, config.hidden_size, config.num_classes, &device)", 1))
        inside = float(re.search(r"INSIDE ([\d.]+)", text).group(1))
        results["training cell compile"] = took - inside
        # Training runs in evcxr's runtime process, which the kernel does not wait for: the
        # kernel's CPU time for this cell is the compile's.
        cpu["training cell compile"] = kernel.cpu
        notebook = {"fc": [], "conv": []}
        cli = {"fc": [], "conv": []}
        epochs = {"fc": 5, "conv": 2}
        exprs = {
            "fc": "NeuralNet::new(config.input_size, config.hidden_size, config.num_classes, &device)",
            "conv": "ConvNet::new(config.hidden_size, config.num_classes, &device)",
        }
        for _ in range(args.repeat):
            for model in ("fc", "conv"):
                _, text = kernel.run(train_cell(exprs[model], epochs[model]))
                notebook[model].append(float(re.search(r"RATE ([\d.]+)", text).group(1)))
                cli[model].append(cli_rate(model, epochs[model], data))
                print(f"  {model}: notebook {notebook[model][-1]:,.0f} images/s, "
                      f"CLI {cli[model][-1]:,.0f} images/s", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nwall-clock seconds, with the machine's load average at {load:.1f} "
          f"on {os.cpu_count()} cores; CPU seconds of the kernel and its builds in brackets")
    print("\n| target | goal | measured |")
    print("|---|---|---|")
    print(f"| a fresh kernel's first cell | <= 30 s | {results['first cell']:.1f} s "
          f"[{cpu['first cell']:.1f} CPU s], after the kernel's start and warm-up: "
          f"{results['kernel ready']:.1f} s [{cpu['kernel ready']:.1f} CPU s] |")
    print(f"| a model-definition cell | <= 1 s | {results['model cell']:.2f} s "
          f"[{cpu['model cell']:.2f} CPU s] |")
    print(f"| a training cell's compile | <= 3 s | {results['training cell compile']:.2f} s "
          f"[{cpu['training cell compile']:.2f} CPU s] |")
    for model in ("fc", "conv") if args.repeat else ():
        nb, c = max(notebook[model]), max(cli[model])
        print(f"| training speed, {model}: notebook / `mnist-lab train` | >= 0.9x | "
              f"{nb:,.0f} / {c:,.0f} images/s = {nb / c:.2f}x |")

