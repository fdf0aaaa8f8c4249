"""A second kernel, started from the template, as a student on a shared server starts one:

    labkit second-kernel [--user NAME] [--warm-up on|off|both] [--json FILE]

Measures (for the README and reports, never a test's pass or fail): the seconds from the
kernel's start to the end of its first cell (the notebooks' `:dep` and `use` lines and one
`println!`), with the launcher's warm-up on and off, and the disk the kernel's build slot adds
(`du`, the template and the slot counted together and apart). Each run checks what the test of
the same name checks (test_kernel.py): the cell ran, and Cargo compiled no dependency in the
new slot (every registry crate's compiled file is still a link to the template's, every
registry crate's fingerprint is the template's).

`--user NAME` runs the kernel as that Unix user (root only; created with useradd when missing
and removed afterwards), who cannot write the project: its slot goes under a fresh home of its
own, made from the template (the project's .lab/evcxr/slot-0, or MNIST_LAB_TEMPLATE). The user
runs with one capability, reading any file (CAP_DAC_READ_SEARCH), because the toolchain and
Cargo home are in root's private home here; writing is checked as for any user. (With a
toolchain in root's 0700 home this still fails at the first link: collect2 looks for the linker
with access(), which ignores capabilities. It needs a toolchain every user can run, as a
shared server has.) Without `--user`, the kernel runs as this user with MNIST_LAB_SLOTS set to
a fresh folder.
"""

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit import KERNEL_NAME, PACKAGE, ROOT, evcxr_folder, jupyter_folder, slots
from labkit.warm_up import LINES

CELL = "\n".join(list(LINES) + ['println!("second kernel: batch size {}", TrainingConfig::new().batch_size);'])
TIMEOUT = 1800  # a kernel whose slot has to build Burn after all takes many minutes


class OtherUser:
    """Runs commands as the Unix user `name` with CAP_DAC_READ_SEARCH (see the module's
    docs); creates the user when missing (and removes it on close). Root only."""

    def __init__(self, name):
        if os.geteuid() != 0:
            raise PermissionError("running as another user needs root")
        self.name, self.created = name, False
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           check=True, capture_output=True)
            self.created = True
        self.uid = pwd.getpwnam(name).pw_uid
        self.prefix = ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups",
                       "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]

    def own(self, path):
        shutil.chown(path, self.name, self.name)

    def run(self, command, **options):
        return subprocess.run(self.prefix + command, **options)

    def close(self):
        if self.created:
            subprocess.run(["userdel", self.name], capture_output=True)


def registry_state(slot, template):
    """How `slot` stands against `template` for the registry crates: `shared` (their compiled
    files in the template), `replaced` (those the slot no longer links to: compiled again in
    the slot), `fingerprints` (the template's fingerprint files of registry crates) and
    `changed` (those that differ in the slot)."""
    built, mine = template / "kernel" / "target", slot / "kernel" / "target"
    crates = slots.registry_crates(template / "Cargo.lock")
    shared, replaced, fingerprints, changed = 0, [], 0, []
    for folder, name in slots.walk(built):
        if slots.shared(folder, name, crates):
            shared += 1
            if not (mine / folder / name).is_symlink():
                replaced.append(str(folder / name))
        elif folder.parent.name == ".fingerprint" and \
                folder.name.rsplit("-", 1)[0].replace("-", "_") in crates:
            fingerprints += 1
            copy = mine / folder / name
            if not copy.is_file() or copy.read_bytes() != (built / folder / name).read_bytes():
                changed.append(str(folder / name))
    return {"shared": shared, "replaced": replaced, "fingerprints": fingerprints, "changed": changed}


def du(*folders):
    """`du -s` of the folders together, in MB (a hard-linked file counted once)."""
    out = subprocess.run(["du", "-s", "--block-size=1M", "--total", *map(str, folders)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def first_cell(warm_up):
    """Starts a kernel (this process's user and environment) and runs CELL; returns the
    seconds to ready and to the cell's end, the cell's output and status, and the slot."""
    from jupyter_client import KernelManager

    os.environ["MNIST_LAB_WARM_UP"] = "1" if warm_up else "0"
    outputs = []
    started = time.monotonic()
    manager = KernelManager(kernel_name=KERNEL_NAME)
    manager.start_kernel(cwd=str(ROOT / "notebooks"))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=TIMEOUT)
        ready = time.monotonic() - started
        output = client.execute_interactive(CELL, timeout=TIMEOUT, output_hook=outputs.append)
        took = time.monotonic() - started
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    return {"ready_s": round(ready, 1), "first_cell_s": round(took, 1),
            "status": output["content"]["status"], "output": text}


def inner(args):
    """The kernel's side (run as the student when `--user`): one kernel, as JSON on stdout."""
    result = first_cell(args.warm_up_inner == "on")
    root = evcxr_folder()
    folder = slots.slots_folder(root)
    result["slot"] = str(folder / "slot-0")
    print(json.dumps(result))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit second-kernel", description=__doc__.split("\n")[0])
    parser.add_argument("--user", help="run the kernel as this Unix user (root only)")
    parser.add_argument("--warm-up", choices=("on", "off", "both"), default="both")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--inner", dest="warm_up_inner", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warm_up_inner:
        return inner(args)
    root = evcxr_folder()
    try:
        template = slots.template_slot(root)
    except slots.SlotError as error:
        print(f"second-kernel: {error}", file=sys.stderr)
        return 2
    if template is None:
        print(f"second-kernel: no template build in {root / 'slot-0'}; run `cargo xtask setup` first",
              file=sys.stderr)
        return 2
    try:
        user = OtherUser(args.user) if args.user else None
    except (PermissionError, subprocess.CalledProcessError) as error:
        print(f"second-kernel: --user {args.user}: {error}", file=sys.stderr)
        return 2
    results = []
    try:
        for warm_up in (("on", "off") if args.warm_up == "both" else (args.warm_up,)):
            results.append(one_run(warm_up, user, template))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if user:
            user.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["status"] == "ok" and not r["registry"]["replaced"] and not r["registry"]["changed"]
                    for r in results) else 1


def one_run(warm_up, user, template):
    """One kernel in a fresh slot folder (as `user` when given), then its slot's checks and
    disk; the folder is removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="labkit-second-kernel-"))
    scratch.chmod(0o755)
    try:
        home = scratch / "home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                   JUPYTER_PATH=str(jupyter_folder()))
        env.setdefault("RUSTUP_HOME", str(Path.home() / ".rustup"))
        env.setdefault("CARGO_HOME", str(Path.home() / ".cargo"))
        command = [sys.executable, str(PACKAGE), "second-kernel", "--inner", warm_up]
        for private in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "XDG_RUNTIME_DIR"):
            env.pop(private, None)  # this user's folders: the kernel's user has its own home
        if user:
            env.pop("MNIST_LAB_SLOTS", None)  # the student's slots go where the launcher puts them
            user.own(home)
            out = user.run(command, env=env, capture_output=True, text=True, timeout=2 * TIMEOUT)
        else:
            env["MNIST_LAB_SLOTS"] = str(home / "slots")
            out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=2 * TIMEOUT)
        if out.returncode != 0:
            raise RuntimeError(f"the kernel's side failed: {out.stderr.strip()[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        slot = Path(result["slot"])
        result.update(warm_up=warm_up, user=user.name if user else pwd.getpwuid(os.geteuid()).pw_name,
                      registry=registry_state(slot, template),
                      disk_mb={"template": du(template), "slot": du(slot),
                               "together": du(template, slot)})
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
