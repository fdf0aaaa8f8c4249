"""Build slots: the folders evcxr builds a kernel's cells in, and the one prebuilt template that
every new slot starts from.

evcxr compiles every cell as a crate in a build folder. By default each kernel gets a fresh
temporary folder, so each kernel rebuilds Burn and mnist_lab (minutes) or copies them out of
evcxr's cache (about 20 s, and mnist_lab, a path dependency, is rebuilt anyway). Instead, the
launcher gives each kernel a "slot": a build folder that stays between kernels, so Cargo finds
Burn and mnist_lab already built and only compiles the cell. A slot is held with a file lock
for the life of the kernel, so two kernels never share one.

Each slot is a Cargo workspace whose root manifest (copied from .lab/evcxr/template, which
set-up writes) sets the profile: the cells at opt-level 0 (they compile in about a second) and
every dependency at opt-level 3 without debug assertions (training runs at release speed).
Cargo ignores the [profile.dev] that evcxr writes into the cell crate's own manifest, so `:opt`
has no effect in this kernel.

One build for every kernel. `cargo xtask setup` builds .lab/evcxr/slot-0 once; that build is
the template (MNIST_LAB_TEMPLATE names another built slot). A new slot does not copy it: its
target folder links to the template's compiled registry crates (their .rlib, .rmeta and .so
files, by symbolic link) and copies the rest (fingerprints, dep-info, build scripts' outputs,
the path crates mnist_lab and the cell crate), so an extra kernel adds tens of MB of disk, not
the whole build, and Cargo finds every dependency fresh. Only those files are shared because
they are the ones Cargo and rustc never write in place: rustc writes an .rlib or .rmeta to a
temporary file and renames it over the old one (a rebuilt crate replaces the slot's link,
never the template's file), and a linker replaces a shared library the same way, while Cargo
rewrites fingerprints and dep-info files in place (O_TRUNC), which through a hard link would
change the template. Symbolic links rather than hard links: Linux refuses a hard link to
another user's file that the linking user cannot write (fs.protected_hardlinks), which is the
template on a shared server. (No reflinks on ext4.) A slot notes which template build it was
filled from (`filled-from`); when the template is rebuilt, the slot is filled again.

Who writes where. Slots live in the project's .lab/evcxr when the kernel's user can write
there; otherwise (a JupyterHub server, the project and its build owned by an admin and
read-only to the students) in ~/.cache/mnist_lab/slots, or in MNIST_LAB_SLOTS when set. The
template is only ever read.

A moved or copied project. A slot's workspace pins mnist_lab by its absolute path (the
template's `pin` crate). A notebook of another copy of the project loads mnist_lab from another
path, and Cargo would refuse both with "package collision in the lockfile". So each start
points the slot's pin at the mnist_lab of the project the notebook is in (Jupyter starts a
kernel in its notebook's folder): at worst Cargo rebuilds mnist_lab once. Should the message
still come (a `:dep` on yet another copy), the proxy replaces it with one line that says what
to do.
"""

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

MAX_SLOTS = 8
PIN = re.compile(r'(mnist_lab = \{ path = )("(?:[^"\\]|\\.)*")')
#: The compiled files a slot links to instead of copying: rustc and the linker replace them by
#: renaming a new file over the old, never by writing into it.
SHARED_SUFFIXES = (".rlib", ".rmeta", ".so", ".dylib")
#: lib<crate>-<hash>.<suffix>, Cargo's name for a compiled crate in target/<profile>/deps.
ARTIFACT = re.compile(r"lib(\w+)-[0-9a-f]{16}\.\w+")
#: A package of a Cargo.lock that comes from a registry or git (not a path crate).
LOCKED = re.compile(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "[^"]+"\nsource = ')
FILLED_FROM = "filled-from"
#: evcxr's name for the cell crate, and for its copy of each cell's library (evcxr's
#: module.rs): the cells of the template's own kernel, of no use to another slot.
CELL_CRATE = "ctx"
CELL_COPY = re.compile(r"(lib)?code_\d+\.\w+")


class SlotError(Exception):
    """A setting or folder that keeps the kernel from getting a build slot (one line)."""


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


def slots_folder(root, environ=os.environ):
    """Where this user's slots go: MNIST_LAB_SLOTS; else `root` (the project's .lab/evcxr)
    when writable; else ~/.cache/mnist_lab/slots (XDG_CACHE_HOME's, when set). Created."""
    if environ.get("MNIST_LAB_SLOTS"):
        folder, why = Path(environ["MNIST_LAB_SLOTS"]).expanduser(), "MNIST_LAB_SLOTS"
    elif os.access(root, os.W_OK):
        return root
    else:
        cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder, why = cache / "mnist_lab" / "slots", f"{root} is read-only to this user, so"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SlotError(f"{why}: cannot make the build slots' folder {folder} ({error.strerror}); "
                        "set MNIST_LAB_SLOTS to a folder this user can write") from None
    if not os.access(folder, os.W_OK):
        raise SlotError(f"the build slots' folder {folder} is not writable by this user; set "
                        "MNIST_LAB_SLOTS to a folder this user can write")
    return folder


def template_slot(root, environ=os.environ):
    """The built slot every new slot starts from: MNIST_LAB_TEMPLATE, else root/slot-0 (which
    set-up builds). Returns None when the default has no build yet (a slot then builds
    everything itself)."""
    if environ.get("MNIST_LAB_TEMPLATE"):
        template = Path(environ["MNIST_LAB_TEMPLATE"]).expanduser()
        if not (template / "kernel" / "target").is_dir():
            raise SlotError(f"MNIST_LAB_TEMPLATE={template} holds no kernel build "
                            "(kernel/target); point it at a built slot, such as the project's "
                            ".lab/evcxr/slot-0 after `cargo xtask setup`, or unset it")
        return template.resolve()
    template = root / "slot-0"
    return template.resolve() if (template / "kernel" / "target").is_dir() else None


def notebook_project(default):
    """The project whose notebook this kernel runs: the first folder, from the kernel's working
    folder (Jupyter starts a kernel in its notebook's folder) upwards, that holds
    mnist_lab/Cargo.toml; else `default`, the project that set this kernel up."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "mnist_lab" / "Cargo.toml").is_file():
            return folder.resolve()
    return default


def registry_crates(lockfile):
    """The crate names (`-` as `_`) of the packages in `lockfile` that come from a registry
    or git: the ones a slot may share with the template."""
    text = Path(lockfile).read_text() if Path(lockfile).is_file() else ""
    return {name.replace("-", "_") for name in LOCKED.findall(text.replace("\r\n", "\n"))}


def shared(folder, name, crates):
    """Whether the file `name` in the target folder's `folder` (relative) is a registry
    crate's compiled file, which a slot links to."""
    found = ARTIFACT.fullmatch(name)
    return (
        folder.name == "deps"
        and name.endswith(SHARED_SUFFIXES)
        and found is not None
        and found.group(1) in crates
    )


def walk(target):
    """The target folder's files, as (folder relative to `target`, name), without the
    incremental state and the copies of the cells' libraries (of no use to another slot)."""
    for folder, folders, files in os.walk(target):
        folders[:] = sorted(f for f in folders if f != "incremental")
        relative = Path(folder).relative_to(target)
        for name in sorted(files):
            if not CELL_COPY.fullmatch(name):
                yield relative, name


def template_stamp(template):
    """What identifies a template's build: its path and the name, size and modification time
    of each compiled crate but the cell crate (a rebuilt crate changes them; a cell run in the
    template's own kernel does not)."""
    built = template / "kernel" / "target"
    digest = hashlib.sha256(str(template).encode())
    for folder, name in walk(built):
        found = ARTIFACT.fullmatch(name)
        if folder.name == "deps" and found and found.group(1) != CELL_CRATE:
            info = (built / folder / name).stat()
            digest.update(f"{folder / name} {info.st_size} {info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fill(target, built, crates):
    """Fills the new folder `target` from the template's target folder `built`: a symbolic
    link for each registry crate's compiled file, a copy (times kept) of everything else.
    Returns (links, copies)."""
    links = copies = 0
    for folder, name in walk(built):
        source, copy = built / folder / name, target / folder / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            copy.symlink_to(os.readlink(source))
        elif shared(folder, name, crates):
            copy.symlink_to(source)
            links += 1
        else:
            shutil.copy2(source, copy)
            copies += 1
    return links, copies


def prepare(slot, manifests, template, project):
    """Makes `slot` ready for a kernel: the workspace's manifests from `manifests` (set-up's
    .lab/evcxr/template) with the pin pointing at `project`'s mnist_lab, the lockfile, and,
    unless `slot` is the template itself, the template's build (see fill), filled again when
    the template was rebuilt since."""
    (slot / "kernel").mkdir(parents=True, exist_ok=True)
    for name in ("Cargo.toml", "pin"):
        source, target = manifests / name, slot / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, target)
    pin = slot / "pin" / "Cargo.toml"
    if pin.exists():
        # Resolved, as evcxr resolves a `:dep`'s relative path: a home whose mnist_lab links to
        # a shared project's (deploy/image/start.sh) pins the path the notebook's `:dep` names.
        here = json.dumps(str((project / "mnist_lab").resolve()))
        text = pin.read_text()
        moved = PIN.sub(lambda m: m.group(1) + here, text)
        if moved != text:
            pin.write_text(moved)
    if template is None or slot.resolve() == template:
        lockfile = manifests / "Cargo.lock"
        if not (slot / "Cargo.lock").exists() and lockfile.exists():
            shutil.copy2(lockfile, slot / "Cargo.lock")
        return
    stamp = template_stamp(template)
    target, record = slot / "kernel" / "target", slot / FILLED_FROM
    if target.is_dir() and record.is_file() and record.read_text() == stamp:
        return
    print(f"mnist_lab kernel: {slot.name} starts from the build in {template}", file=sys.stderr)
    record.unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial = slot / "kernel" / f"target.partial-{os.getpid()}"
    for stale in (slot / "kernel").glob("target.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # an earlier fill that was cut short
    try:
        fill(partial, template / "kernel" / "target", registry_crates(template / "Cargo.lock"))
        shutil.copy2(template / "Cargo.lock", slot / "Cargo.lock")
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record.write_text(stamp)


def take(root, project, environ=os.environ):
    """Takes a free build slot for this user and makes it ready (prepare); returns (slot, the
    lock to hold for the kernel's life). Raises SlotError when none can be had."""
    folder = slots_folder(root, environ)
    template = template_slot(root, environ)
    for n in range(MAX_SLOTS):
        held = lock(folder / f"slot-{n}.lock")
        if held is None:
            continue
        slot = folder / f"slot-{n}"
        # Refresh the workspace manifest on every start so a new setup's profile applies.
        prepare(slot, root / "template", template, project)
        return slot, held
    raise SlotError(f"all {MAX_SLOTS} build slots in {folder} are in use")
