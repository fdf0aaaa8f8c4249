"""The `cargo` that rust-analyzer runs inside the kernel (`labkit cargo`), and the Cargo home
that puts it there.

rust-analyzer runs inside evcxr_jupyter and loads every crate that `cargo metadata` lists for
the cell crate. Cargo lists more than it builds: an optional dependency named only in a weak
feature (`dep?/feature`, which Burn uses for each of its backends) is in the lockfile and in
`cargo metadata`, though never built. For mnist_lab that is 683 crates with 283 MB of sources
(Burn's CUDA, ROCm, wgpu and LibTorch backends, its training dashboard, an SQL engine...),
where Cargo builds 230 (89 MB), and rust-analyzer held 4.0 GB after the warm-up instead of
1.6 GB. So evcxr_jupyter runs with a Cargo home of its own, .lab/evcxr/cargo-home: the user's
Cargo home through symbolic links, except `bin/cargo`, the `cargo` that rust-analyzer runs
(evcxr builds with the toolchain's own). That one is this module (`labkit cargo`): for `cargo
metadata` on a crate in a build slot (under MNIST_LAB_ANALYZER_SLOTS, which the launcher sets)
it drops the packages that `cargo tree` does not list; everything else goes to the real cargo
untouched.

Cargo rebuilds a registry crate when its source path changes (its fingerprint hashes the
absolute path of the crate's sources), so every slot, and every user's, is built with this one
Cargo home: set-up builds slot-0 through a kernel too, and a kernel whose user cannot write
the project's .lab/evcxr uses the Cargo home as the template's owner left it. Not on Windows
(the link is a shell script), where rust-analyzer sees every crate.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from labkit import PACKAGE

#: `cargo metadata`'s options that `cargo tree` takes too, under its own name.
VALUED = {"--manifest-path": "--manifest-path", "--features": "--features",
          "--config": "--config", "--lockfile-path": "--lockfile-path",
          "--filter-platform": "--target", "-Z": "-Z"}
FLAGS = ("--all-features", "--no-default-features", "--offline", "--locked", "--frozen")
#: The environment variable that names the folder of the build slots whose metadata is
#: filtered (the launcher sets it for evcxr_jupyter, and so for rust-analyzer).
SLOTS_VARIABLE = "MNIST_LAB_ANALYZER_SLOTS"


def real_cargo_home():
    """The user's Cargo home: CARGO_HOME, else ~/.cargo."""
    return Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")


def shim_text(cargo):
    """The shell script `bin/cargo` of the kernel's Cargo home: `labkit cargo` with `cargo`
    as the real one."""
    return (
        "#!/bin/sh\n# Written by the kernel launcher (scripts/labkit/cargo_shim.py): the cargo "
        "that rust-analyzer runs.\n"
        f"MNIST_LAB_REAL_CARGO={shlex.quote(str(cargo))} exec {shlex.quote(sys.executable)} "
        f"{shlex.quote(str(PACKAGE))} cargo \"$@\"\n"
    )


def analyzer_cargo_home(root):
    """Makes (or refreshes) root/cargo-home, the Cargo home evcxr_jupyter runs with, and
    returns it; None on Windows or without cargo. When `root` is not writable (a template
    set up by another user), the Cargo home is used as it is, if it is there."""
    home = root / "cargo-home"
    real = real_cargo_home()
    if os.name == "nt" or real.resolve() == home.resolve():
        return None
    if not os.access(root, os.W_OK):
        return home if (home / "bin" / "cargo").is_file() else None
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
    text = shim_text(cargo)
    if not shim.exists() or shim.read_text() != text:
        fresh = shim.with_name(f"cargo.{os.getpid()}")
        fresh.write_text(text)
        fresh.chmod(0o755)
        os.replace(fresh, shim)
    return home


def tree_command(cargo, args):
    """The `cargo tree` that lists the packages a `cargo metadata ARGS` would have Cargo
    build: one `name vX.Y.Z` per line, with the options of ARGS that concern the build."""
    tree = [cargo, "tree", "--edges", "normal,build,dev", "--prefix", "none", "--format", "{p}"]
    at = 1
    while at < len(args):
        if args[at] in VALUED and at + 1 < len(args):
            tree += [VALUED[args[at]], args[at + 1]]
            at += 1
        elif args[at] in FLAGS or args[at].startswith("-Z"):
            tree.append(args[at])
        at += 1
    return tree


def keep_built(data, tree_output):
    """`data` (`cargo metadata`'s JSON, parsed) with only the packages that `tree_output` (the
    output of tree_command) lists, and the workspace's members; raises ValueError when the
    tree gives nothing to go by (then the metadata is to be used as it came)."""
    built = {tuple(line.split()[:2]) for line in tree_output.splitlines()}
    members = set(data["workspace_members"])
    keep = {
        p["id"] for p in data["packages"]
        if (p["name"], "v" + p["version"]) in built or p["id"] in members
    }
    if not data.get("resolve") or len(keep) <= len(members):
        raise ValueError("nothing to go by")
    data = dict(data, packages=[p for p in data["packages"] if p["id"] in keep])
    nodes = []
    for node in data["resolve"]["nodes"]:
        if node["id"] in keep:
            nodes.append(dict(
                node,
                deps=[d for d in node["deps"] if d["pkg"] in keep],
                dependencies=[d for d in node["dependencies"] if d in keep],
            ))
    data["resolve"] = dict(data["resolve"], nodes=nodes)
    return data


def in_slots(args, slots):
    """Whether ARGS are a `cargo metadata` (with dependencies) on a crate under `slots`."""
    manifest = args[args.index("--manifest-path") + 1] if "--manifest-path" in args else "."
    return (
        args[:1] == ["metadata"]
        and "--no-deps" not in args
        and slots is not None
        and Path(slots).resolve() in Path(os.path.abspath(manifest)).resolve().parents
    )


def cargo_for_analyzer(args):
    """`labkit cargo ARGS`: runs `cargo ARGS` with the real cargo; for `cargo metadata` on a
    crate in a build slot, prints its output without the packages that Cargo does not build
    (that `cargo tree` does not list). On any doubt, the output as it came."""
    cargo = os.environ.get("MNIST_LAB_REAL_CARGO")
    if not cargo:
        print("labkit cargo: MNIST_LAB_REAL_CARGO is not set; this command is the cargo that "
              "rust-analyzer runs inside the mnist_lab kernel (run cargo itself instead)",
              file=sys.stderr)
        return 2
    if not in_slots(args, os.environ.get(SLOTS_VARIABLE)):
        os.execv(cargo, [cargo, *args])
    metadata = subprocess.run([cargo, *args], stdout=subprocess.PIPE)
    if metadata.returncode != 0:
        return metadata.returncode
    listed = subprocess.run(tree_command(cargo, args), capture_output=True, text=True)
    try:
        if listed.returncode != 0:
            raise ValueError("cargo tree failed")
        sys.stdout.write(json.dumps(keep_built(json.loads(metadata.stdout), listed.stdout)))
    except (ValueError, KeyError, TypeError):
        sys.stdout.buffer.write(metadata.stdout)
    return 0
