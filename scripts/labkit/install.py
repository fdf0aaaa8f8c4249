"""What `cargo xtask setup` installs once it has found evcxr_jupyter and Python, and `cargo
xtask lab`'s JupyterLab:

    labkit setup --evcxr PATH [--python PATH] [--features wgpu,cuda]
                 [--warm always|if-needed|never] [--root DIR] [--elapsed SECONDS]
    labkit lab [--data DIR] [--root DIR]

`setup` writes, under the project's `.lab/` (every step is quick when already done):

- the kernelspec, `.lab/jupyter/kernels/mnist_lab/kernel.json`, in the project's own Jupyter
  folder, which the tools put in front of JUPYTER_PATH: the user's own kernels stay as they
  are. It runs this package's `kernel` command (kernel.py) with the Python given (`--python`,
  by default this one), and names evcxr_jupyter (`--evcxr`) and the build slots' folder;
- the Cargo workspace each build slot starts from, `.lab/evcxr/template` (see slots.py);
- for GPU `--features`, the crate that builds the kernel's mnist_lab with them (below);

then, as `--warm` says, builds the kernel's dependencies: `always` (`cargo xtask setup`),
`if-needed` (`cargo xtask lab`: when slot-0 has no build yet, or the features changed) or
`never` (`cargo xtask notebooks`: the notebook runner builds on its first kernel anyway). The
build runs the warm-up code in a kernel (notebooks.py, `warm_up`).

`lab` opens JupyterLab on notebooks/ with the project's kernel, MNIST_LAB_DATA set from
`--data`.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from labkit import KERNEL_NAME, PACKAGE, ROOT, evcxr_folder, jupyter_folder

#: The kernel's name in JupyterLab's launcher.
DISPLAY_NAME = "Rust (mnist_lab)"
#: mnist_lab's features a kernel can be built with.
KERNEL_FEATURES = ("wgpu", "cuda")

#: The root manifest of a build slot. The cell crate (evcxr's `ctx`) is a member, so this
#: profile applies and the one evcxr writes is ignored.
SLOT_MANIFEST = """\
# Written by `cargo xtask setup`; copied into each evcxr build slot (.lab/evcxr/slot-N).
[workspace]
members = ["kernel", "pin"]
resolver = "3"

# The cells: evcxr's own profile, at opt-level 0 so a cell compiles in about a second.
[profile.dev]
opt-level = 0
debug = false
strip = "debuginfo"
rpath = true
lto = false
debug-assertions = true
codegen-units = 16
panic = "unwind"
incremental = true
overflow-checks = true

# Burn, mnist_lab and every other dependency: built once, as fast as a release build.
[profile.dev.package."*"]
opt-level = 3
debug-assertions = false
overflow-checks = false
"""

#: The slot's `pin` crate, which keeps mnist_lab in the slot's Cargo.lock.
PIN_MANIFEST = """\
# Keeps mnist_lab and its dependencies in the slot's Cargo.lock at the workspace's
# versions: evcxr starts each kernel with a cell crate that has no dependencies,
# which would otherwise empty the lock (and the next `:dep` would resolve afresh,
# online, perhaps to newer versions that need building). Never built. `cfg(any())`
# is false on every platform: Cargo locks the dependency all the same, while
# rust-analyzer (which evcxr runs on every cell) filters it out and so does not
# analyse Burn at kernel start, only once the notebook's `:dep` asks for it.
[package]
name = "pin"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
path = "lib.rs"

[target.'cfg(any())'.dependencies]
mnist_lab = {{ path = {path}{features} }}
"""

#: The crate that builds the kernel's mnist_lab with GPU features.
FEATURES_MANIFEST = """\
# Written by `cargo xtask lab --features {wanted}`: builds the kernel's mnist_lab
# with these features (see scripts/labkit/install.py, write_kernel_features).
[package]
name = "mnist_lab_features"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
path = "lib.rs"

[dependencies]
mnist_lab = {{ path = {path}, features = [{features}] }}
"""


def string(text):
    """`text` as a JSON (and TOML) string."""
    return json.dumps(str(text), ensure_ascii=False)


def write_kernel(root, python, evcxr):
    """Writes the kernelspec into the project's own Jupyter folder (`.lab/jupyter`)."""
    folder = jupyter_folder(root) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    slots = evcxr_folder(root)
    # The package's folder: Python runs its __main__.py, from whatever folder Jupyter starts
    # the kernel in (the notebook's).
    launcher = Path(root).resolve() / PACKAGE.relative_to(ROOT)
    kernel = f"""{{
 "argv": [{string(python)}, {string(launcher)}, "kernel", "{{connection_file}}"],
 "display_name": {string(DISPLAY_NAME)},
 "language": "rust",
 "interrupt_mode": "message",
 "env": {{
  "MNIST_LAB_EVCXR_DIR": {string(slots)},
  "MNIST_LAB_EVCXR_JUPYTER": {string(evcxr)},
  "EVCXR_CONFIG_DIR": {string(slots / "config")},
  "JUPYTER_PATH": {string(jupyter_folder(root))}
 }}
}}
"""
    (folder / "kernel.json").write_text(kernel)
    (slots / "config").mkdir(parents=True, exist_ok=True)
    if not (folder / "logo-64x64.png").exists():
        # evcxr_jupyter --install writes its Rust logos; copy them next to our kernel.json.
        scratch = Path(root) / ".lab" / "evcxr-install"
        try:
            subprocess.run([str(evcxr), "--install"], env=dict(os.environ, JUPYTER_PATH=str(scratch)),
                           capture_output=True)
        except OSError:
            pass
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-LICENSE.md"):
            try:
                shutil.copy(scratch / "kernels" / "rust" / logo, folder / logo)
            except OSError:
                pass
        shutil.rmtree(scratch, ignore_errors=True)
    print(f'setup: kernel "{DISPLAY_NAME}" written to {folder}', flush=True)


def write_build_template(root, features):
    """The Cargo workspace each build slot starts from (see slots.py). The pin names the
    kernel's GPU `features` too, so their dependencies stay in the slot's lock."""
    template = evcxr_folder(root) / "template"
    (template / "pin").mkdir(parents=True, exist_ok=True)
    (template / "Cargo.toml").write_text(SLOT_MANIFEST)
    listed = f", features = [{', '.join(string(f) for f in features)}]" if features else ""
    (template / "pin" / "Cargo.toml").write_text(
        PIN_MANIFEST.format(path=string(Path(root) / "mnist_lab"), features=listed)
    )
    (template / "pin" / "lib.rs").write_text("")
    # The workspace's tested versions of Burn and the rest.
    shutil.copyfile(Path(root) / "Cargo.lock", template / "Cargo.lock")


def write_kernel_features(root, features):
    """Builds the kernel's mnist_lab with `features`, without touching the notebooks.

    The notebooks' `:dep mnist_lab = { path = "../mnist_lab" }` line names no features, and
    evcxr builds the cell crate alone, so a feature has to reach mnist_lab through the cell
    crate's own dependencies. evcxr runs `init.evcxr` from its configuration folder (the
    kernelspec points EVCXR_CONFIG_DIR at `.lab/evcxr/config`) when a kernel starts; with GPU
    features, setup writes a `:dep` line there for a small crate, `.lab/evcxr/features`, whose
    only dependency is mnist_lab with those features. Cargo unifies features, so the
    notebook's mnist_lab is that same crate, built with them. Without features both files are
    removed and the kernel is the CPU one. Returns whether the features changed since the
    last set-up (the kernel's build must then be redone)."""
    slots = evcxr_folder(root)
    init = slots / "config" / "init.evcxr"
    crate = slots / "features"
    stamp = slots / "features.txt"
    wanted = ",".join(features)
    before = stamp.read_text() if stamp.is_file() else ""
    if not features:
        init.unlink(missing_ok=True)
        shutil.rmtree(crate, ignore_errors=True)
    else:
        crate.mkdir(parents=True, exist_ok=True)
        (crate / "Cargo.toml").write_text(FEATURES_MANIFEST.format(
            wanted=wanted,
            path=string(Path(root) / "mnist_lab"),
            features=", ".join(string(f) for f in features),
        ))
        (crate / "lib.rs").write_text("")
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text(f":dep mnist_lab_features = {{ path = {string(crate)} }}\n")
        print(f"setup: the kernel's mnist_lab is built with --features {wanted} (a set-up "
              "without --features, `cargo xtask test` included, goes back to the CPU kernel)",
              flush=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(wanted)
    return before != wanted


def setup(args):
    started = time.monotonic()
    root = Path(args.root).resolve()
    features = [f for f in args.features.replace(" ", ",").split(",") if f]
    other = [f for f in features if f not in KERNEL_FEATURES]
    if other:
        print(f"setup: --features takes {', '.join(KERNEL_FEATURES)} (comma-separated), not "
              f"`{other[0]}`", file=sys.stderr)
        return 2
    write_kernel(root, args.python, args.evcxr)
    write_build_template(root, features)
    changed = write_kernel_features(root, features)
    built = (evcxr_folder(root) / "slot-0" / "kernel" / "target").is_dir() and not changed
    if args.warm == "if-needed" and built:
        print("setup: the kernel's build is there (after changing mnist_lab or its dependencies, "
              "`cargo xtask setup` rebuilds it ahead of the first cell)", flush=True)
    if args.warm == "always" or (args.warm == "if-needed" and not built):
        print(f"setup: building the kernel's dependencies (Burn, mnist_lab) in "
              f"{evcxr_folder(root) / 'slot-0'} (the first time: several minutes)", flush=True)
        from labkit import notebooks

        if notebooks.main("warm-up", []) != 0:
            print("setup: the warm-up kernel failed; see its messages above", file=sys.stderr)
            return 1
        took = args.elapsed + time.monotonic() - started
        print(f'setup: done in {took:.0f} s. Kernel "{DISPLAY_NAME}" in {jupyter_folder(root)}',
              flush=True)
    return 0


def lab(args):
    """JupyterLab on notebooks/, until it ends (Ctrl+C, twice, as JupyterLab asks)."""
    command = [sys.executable, "-m", "jupyterlab",
               f"--ServerApp.root_dir={Path(args.root).resolve() / 'notebooks'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses root without this (containers, CI images).
        command.append("--allow-root")
    env = dict(os.environ)
    if args.data:
        data = Path(args.data)
        if not data.exists():
            print(f"lab: {data}: no such folder", file=sys.stderr)
            return 2
        env["MNIST_LAB_DATA"] = str(data.resolve())
    print(f'lab: opening JupyterLab on notebooks/ (kernel "{DISPLAY_NAME}"); stop it with Ctrl+C',
          flush=True)
    server = subprocess.Popen(command, env=env)
    # Ctrl+C reaches JupyterLab too, which asks before it stops: we wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = server.wait()
    if status != 0:
        print(f"lab: jupyter lab failed (exit status {status})", file=sys.stderr)
    return status


def main(command, argv):
    """`labkit setup` or `labkit lab` (see the module's docs)."""
    parser = argparse.ArgumentParser(prog=f"labkit {command}", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="the project [default: this package's]")
    if command == "lab":
        parser.add_argument("--data", help="MNIST folder; sets MNIST_LAB_DATA for the kernels")
        return lab(parser.parse_args(argv))
    parser.add_argument("--evcxr", required=True, help="the evcxr_jupyter program")
    parser.add_argument("--python", default=sys.executable, help="the kernel's Python")
    parser.add_argument("--features", default="", help="wgpu, cuda (comma-separated)")
    parser.add_argument("--warm", choices=("always", "if-needed", "never"), default="always")
    parser.add_argument("--elapsed", type=float, default=0.0,
                        help="seconds the set-up took before (for the time it prints)")
    args = parser.parse_args(argv)
    try:
        return setup(args)
    except OSError as error:  # a file that cannot be written: one line, not a traceback
        print(f"setup: {error}", file=sys.stderr)
        return 1
