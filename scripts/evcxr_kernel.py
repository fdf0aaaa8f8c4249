"""Starts evcxr_jupyter for mnist_lab's notebooks in a build folder that outlives the kernel.

The kernelspec that `cargo xtask setup` writes (.lab/jupyter/kernels/mnist_lab) runs

    .venv/bin/python scripts/evcxr_kernel.py {connection_file}

evcxr compiles every cell as a crate in a build folder. By default each kernel gets a fresh
temporary folder, so each kernel rebuilds Burn and mnist_lab (minutes) or copies them out of
evcxr's cache (about 20 s, and mnist_lab, a path dependency, is rebuilt anyway). Instead, this
launcher gives each kernel a "slot": a build folder under .lab/evcxr/ that stays between kernels,
so Cargo finds Burn and mnist_lab already built and only compiles the cell. `cargo xtask setup`
builds slot-0 once.

A slot is held with a file lock for the life of the kernel, so two kernels never share one. A
second kernel running at the same time takes slot-1, which starts as a copy of slot-0's build
(seconds, and another 650 MB or so of disk) instead of a build from scratch.

Each slot is a Cargo workspace whose root manifest (copied from .lab/evcxr/template) sets the
profile: the cells at opt-level 0 (they compile in about a second) and every dependency at
opt-level 3 without debug assertions (training runs at release speed). Cargo ignores the
[profile.dev] that evcxr writes into the cell crate's own manifest, so `:opt` has no effect in
this kernel.

Before the notebook's first cell, the kernel warms up: the launcher connects to it as a second
client and runs the notebooks' `:dep` and `use` lines and one `let`. evcxr then has built the
cell crate and run rust-analyzer over Burn's crates (which it does once per kernel, to know the
types of a cell's variables: about 40 CPU-seconds), so the student's first cell takes seconds.
The kernel shows as busy meanwhile; a cell run during the warm-up waits for it.
MNIST_LAB_WARM_UP=0 turns the warm-up off.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MAX_SLOTS = 8


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


def prepare(slot, template, first):
    """Fills a new slot from the template and, when slot-0 is built, from slot-0's build."""
    for name in ("Cargo.toml", "pin"):
        source, target = template / name, slot / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
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


def warm_up_code(project):
    """The `:dep` and `use` lines of setup_check.ipynb's first cell (the notebooks share them),
    with paths made absolute as evcxr makes them, then one `let`: it is a `let` that makes evcxr
    run rust-analyzer."""
    notebook = project / "notebooks" / "setup_check.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    source = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    lines = []
    for line in source.splitlines():
        line = line.strip()
        if line.startswith(":dep ") and 'path = "' in line:
            before, rest = line.split('path = "', 1)
            path, after = rest.split('"', 1)
            if not Path(path).is_absolute():
                path = str((notebook.parent / path).resolve())
            line = f'{before}path = "{path}"{after}'
        if line.startswith((":dep ", "use ")):
            lines.append(line)
    return "\n".join(lines + ["let kernel_warmed_up: bool = true;"])


def warm_up(connection_file, project):
    """Runs the warm-up code in the new kernel and notes the outcome in the slot's
    warm-up.log (when it fails, the notebook's own first cell shows why)."""
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
    (Path(os.environ["EVCXR_TMPDIR"]).parent / "warm-up.log").write_text(outcome + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: evcxr_kernel.py CONNECTION_FILE")
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
        # Refresh the workspace manifest on every start so a new setup's profile applies.
        prepare(slot, template, first)
        os.environ["EVCXR_TMPDIR"] = str(slot / "kernel")
        env = dict(os.environ)
        kernel = subprocess.Popen([evcxr, "--control_file", sys.argv[1]], env=env)
        # This process holds the slot's lock until the kernel ends. Jupyter stops the kernel
        # with a message, or with signals to the whole process group.
        (slot / "warm-up.log").unlink(missing_ok=True)
        try:
            if os.environ.get("MNIST_LAB_WARM_UP", "1") != "0":
                warm_up(sys.argv[1], root.parent.parent)
            else:
                (slot / "warm-up.log").write_text("warm-up off (MNIST_LAB_WARM_UP=0)\n")
            sys.exit(kernel.wait())
        except KeyboardInterrupt:
            sys.exit(kernel.wait())
    sys.exit(f"mnist_lab kernel: all {MAX_SLOTS} build slots in {root} are in use")


if __name__ == "__main__":
    main()
