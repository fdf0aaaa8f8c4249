"""Tests of the build slots (slots.py) with real Cargo builds of two small crates, no kernel
needed:

    python -m unittest labkit.test_slots      (with scripts/ on sys.path)

A template slot is built as a kernel builds it (a cell crate that needs a registry crate, the
locked `itoa`, and a path crate standing for mnist_lab; `cargo build --target HOST
--message-format=json` in the slot's `kernel` folder, as evcxr runs it). Then another user,
who cannot write the template's folder, gets a slot of their own from it and builds a new cell:
Cargo compiles no dependency (every registry and path crate is fresh in its JSON messages),
and the template's files are unchanged, byte for byte and inode for inode, after that cell,
after the slot rebuilds the path crate, and after it rebuilds the registry crate. As root (CI),
the other user is a real one (created with useradd, removed afterwards) that runs with one
capability, reading any file (CAP_DAC_READ_SEARCH), because the toolchain lives in root's
private home; writing is checked as for any user. As another user, the template is made
read-only instead.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from labkit import PACKAGE, ROOT, slots
from labkit.second_kernel import OtherUser

STUDENT = "labkit-student"
TIMEOUT = 600  # one small build on a loaded machine


def locked_version(name):
    block = next(b for b in (ROOT / "Cargo.lock").read_text().split("[[package]]")
                 if f'\nname = "{name}"\n' in b)
    return block.split('version = "')[1].split('"')[0]


def snapshot(folder):
    """Every file under `folder` (links not followed): its inode, size and content's hash."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            found[str(path.relative_to(folder))] = (
                info.st_ino, info.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def host_triple():
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("host:"))


class Student:
    """Runs commands as a user who cannot write the template: a real other user when this
    process is root (second_kernel.OtherUser), else this user (with the template made
    read-only)."""

    def __init__(self, home):
        self.other = OtherUser(STUDENT) if os.geteuid() == 0 else None
        if self.other:
            self.other.own(home)
        self.prefix = self.other.prefix if self.other else []
        self.uid = self.other.uid if self.other else os.geteuid()

    def run(self, command, cwd, env):
        return subprocess.run(self.prefix + command, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)

    def close(self):
        if self.other:
            self.other.close()


def cell_crate(folder, project, body):
    """The cell crate as evcxr writes it into a slot's `kernel` folder."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "Cargo.toml").write_text(
        '[package]\nname = "ctx"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
        f'p = {{ path = {json.dumps(str(project / "p"))} }}\n')
    (folder / "src" / "lib.rs").write_text(f"pub fn run() -> usize {{ {body} }}\n")


def built(out):
    """From `cargo build --message-format=json`: {package name: fresh} of its artifacts."""
    found = {}
    for line in out.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        if message.get("reason") == "compiler-artifact" and "custom-build" not in message["target"]["kind"]:
            name = message["target"]["name"]
            found[name] = found.get(name, True) and message["fresh"]
    return found


class SharedTemplate(unittest.TestCase):
    def setUp(self):
        self.cargo = shutil.which("cargo")
        self.assertIsNotNone(self.cargo, "cargo is not on PATH")
        self.folder = Path(tempfile.mkdtemp(prefix="labkit-slots-"))
        self.folder.chmod(0o755)
        self.addCleanup(self.remove)
        # The project (the path crate p stands for mnist_lab), set-up's manifests, the template.
        self.project, self.root = self.folder / "project", self.folder / "evcxr"
        (self.project / "p" / "src").mkdir(parents=True)
        (self.project / "p" / "Cargo.toml").write_text(
            '[package]\nname = "p"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
            f'itoa = "={locked_version("itoa")}"\n')
        (self.project / "p" / "src" / "lib.rs").write_text(
            "pub fn digits(n: u64) -> usize { itoa::Buffer::new().format(n).len() }\n")
        (self.root / "template").mkdir(parents=True)
        (self.root / "template" / "Cargo.toml").write_text(
            '[workspace]\nmembers = ["kernel"]\nresolver = "2"\n')
        self.template = self.root / "slot-0"
        slots.prepare(self.template, self.root / "template", None, self.project)
        cell_crate(self.template / "kernel", self.project, "p::digits(12345)")
        self.env = dict(os.environ, CARGO_TERM_COLOR="never", RUSTFLAGS="-Cprefer-dynamic")
        self.env.pop("CARGO_TARGET_DIR", None)
        self.env.pop("MNIST_LAB_SLOTS", None)
        self.env.pop("MNIST_LAB_TEMPLATE", None)
        self.triple = host_triple()
        out = self.cargo_build(self.template / "kernel", self.env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(built(out.stdout), {"itoa": False, "p": False, "ctx": False})
        self.home = self.folder / "home"
        self.home.mkdir()
        self.student = Student(self.home)
        self.addCleanup(self.student.close)
        if not self.student.prefix:  # no other user: the template is read-only to this one
            for path in (self.root, *self.root.rglob("*")):
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o555)
        self.before = snapshot(self.template)
        self.student_env = dict(self.env, HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"),
                                MNIST_LAB_TEMPLATE=str(self.template),
                                RUSTUP_HOME=os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup"),
                                CARGO_HOME=os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo"))

    def remove(self):
        for path in (self.folder, *self.folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(self.folder)

    def cargo_build(self, kernel, env, student=False):
        command = [self.cargo, "build", "--offline", "--target", self.triple, "--message-format=json"]
        env = dict(env, CARGO_TARGET_DIR="target")
        if student:
            return self.student.run(command, kernel, env)
        return subprocess.run(command, cwd=kernel, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)

    def student_build(self, slot, forget=None):
        """Builds the slot's cell crate as the student, after removing the slot's fingerprints
        of the crate `forget` (so Cargo rebuilds it); returns {crate: fresh}."""
        fingerprints = slot / "kernel" / "target" / self.triple / "debug" / ".fingerprint"
        for fingerprint in fingerprints.glob(f"{forget}-*") if forget else ():
            shutil.rmtree(fingerprint)
        out = self.cargo_build(slot / "kernel", self.student_env, student=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        return built(out.stdout)

    def take_slot(self):
        """The student's kernel start: slots.take, as the student."""
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from labkit import slots; from pathlib import Path; "
                "slot, _ = slots.take(Path(sys.argv[2]), Path(sys.argv[3])); print(slot)")
        out = self.student.run([sys.executable, "-c", code, str(PACKAGE.parent), str(self.root),
                                str(self.project)], self.home, self.student_env)
        self.assertEqual(out.returncode, 0, out.stderr)
        return Path(out.stdout.strip())

    def deps(self, slot):
        return slot / "kernel" / "target" / self.triple / "debug" / "deps"

    def assert_template_unchanged(self, when):
        self.assertEqual(snapshot(self.template), self.before, f"the template changed {when}")

    def test_a_students_slot_compiles_no_dependency_and_never_writes_the_template(self):
        out = self.student.run(["test", "-w", str(self.root)], self.home, self.student_env)
        self.assertNotEqual(out.returncode, 0, "the template's folder is writable by the student")
        slot = self.take_slot()
        self.assertEqual(slot, self.home / ".cache" / "mnist_lab" / "slots" / "slot-0")
        self.assertEqual(slot.stat().st_uid, self.student.uid)
        links = sorted(p.name for p in self.deps(slot).iterdir() if p.is_symlink())
        self.assertTrue(links and all(name.startswith("libitoa-") for name in links), links)
        self.assertTrue(all((self.deps(slot) / n).resolve().parent == self.deps(self.template)
                            for n in links))

        # A new cell: only the cell crate compiles.
        cell_crate(slot / "kernel", self.project, "p::digits(7) + 1")
        if self.student.prefix:
            shutil.chown(slot / "kernel" / "src" / "lib.rs", STUDENT, STUDENT)
        self.assertEqual(self.student_build(slot), {"itoa": True, "p": True, "ctx": False})
        self.assert_template_unchanged("after a cell compiled in a slot made from it")

        # The slot rebuilds the path crate (as after a change to mnist_lab): the template stays.
        self.assertEqual(self.student_build(slot, forget="p"), {"itoa": True, "p": False, "ctx": False})
        self.assert_template_unchanged("after the slot rebuilt the path crate")
        # Even a registry crate rebuilt in the slot replaces the slot's link, not the file.
        self.assertFalse(self.student_build(slot, forget="itoa")["itoa"])
        self.assertFalse(any(p.is_symlink() for p in self.deps(slot).iterdir()))
        self.assert_template_unchanged("after the slot rebuilt the registry crate")

        # The same slot on the next start: the template did not change, the slot stays as it is;
        # once the template is rebuilt (here: one of its files is newer), it is filled again.
        self.assertEqual(self.take_slot(), slot)
        self.assertFalse(any(p.is_symlink() for p in self.deps(slot).iterdir()))
        rlib = next(self.deps(self.template).glob("libitoa-*.rlib"))
        os.utime(rlib, ns=(rlib.stat().st_atime_ns, rlib.stat().st_mtime_ns + 10**9))
        self.assertEqual(self.take_slot(), slot)
        self.assertTrue(any(p.is_symlink() for p in self.deps(slot).iterdir()))
        self.assertEqual(list((slot / "kernel").glob("target.partial-*")), [])

    def test_a_second_slot_beside_the_template_links_to_it(self):
        """The single-user case: slots beside the template in the project's folder, which
        this user can write."""
        for path in (self.root, *self.root.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        slot = self.root / "slot-1"
        env = dict(self.env, MNIST_LAB_SLOTS=str(self.root))
        taken, held = slots.take(self.root, self.project, dict(env, MNIST_LAB_TEMPLATE=str(self.template)))
        self.addCleanup(held.close)
        self.assertEqual(taken, self.root / "slot-0")  # the template is a slot too: free, taken first
        second, held2 = slots.take(self.root, self.project, dict(env, MNIST_LAB_TEMPLATE=str(self.template)))
        self.addCleanup(held2.close)
        self.assertEqual(second, slot)
        cell_crate(slot / "kernel", self.project, "p::digits(99)")
        out = self.cargo_build(slot / "kernel", self.env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(built(out.stdout), {"itoa": True, "p": True, "ctx": False}, out.stderr)
        self.assert_template_unchanged("after a cell compiled in a second slot beside it")


class Pin(unittest.TestCase):
    def test_the_pin_follows_the_notebook(self):
        """A slot set up for one copy of the project pins the mnist_lab of the copy whose
        notebook starts the kernel (prepare, on set-up's manifests made for another path)."""
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            manifests, slot, other = folder / "template", folder / "slot-0", folder / "other"
            (manifests / "pin").mkdir(parents=True)
            (other / "mnist_lab").mkdir(parents=True)
            (other / "mnist_lab" / "Cargo.toml").write_text("[package]\nname = \"mnist_lab\"\n")
            (other / "notebooks").mkdir()
            (manifests / "Cargo.toml").write_text("[workspace]\n")
            pin = "[target.'cfg(any())'.dependencies]\nmnist_lab = {{ path = {} }}\n"
            (manifests / "pin" / "Cargo.toml").write_text(pin.format(json.dumps(str(ROOT / "mnist_lab"))))
            here = Path.cwd()
            try:
                os.chdir(other / "notebooks")  # where Jupyter starts a kernel for other's notebooks
                project = slots.notebook_project(ROOT)
                os.chdir(ROOT / "notebooks")
                own = slots.notebook_project(folder)
            finally:
                os.chdir(here)
            self.assertEqual(project, other.resolve())
            self.assertEqual(own, ROOT)
            slots.prepare(slot, manifests, None, project)
            self.assertEqual((slot / "pin" / "Cargo.toml").read_text(),
                             pin.format(json.dumps(str(other.resolve() / "mnist_lab"))))


class Settings(unittest.TestCase):
    def test_the_kernels_build_environment_has_nothing_of_cargo_run(self):
        from labkit.kernel import build_environment

        given = {"CARGO_MANIFEST_DIR": "/p/xtask", "CARGO_PKG_NAME": "xtask", "CARGO": "/c",
                 "CARGO_PRIMARY_PACKAGE": "1", "CARGO_HOME": "/h", "PATH": "/bin", "HOME": "/u"}
        self.assertEqual(build_environment(given), {"CARGO_HOME": "/h", "PATH": "/bin", "HOME": "/u"})

    def test_a_template_without_a_build_is_one_clear_line(self):
        with tempfile.TemporaryDirectory() as folder:
            with self.assertRaises(slots.SlotError) as caught:
                slots.template_slot(Path(folder), {"MNIST_LAB_TEMPLATE": folder})
            message = str(caught.exception)
            self.assertIn("MNIST_LAB_TEMPLATE", message)
            self.assertNotIn("\n", message)

    def test_slots_folder_follows_the_setting_and_the_rights(self):
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            wanted = folder / "mine" / "slots"
            self.assertEqual(slots.slots_folder(folder, {"MNIST_LAB_SLOTS": str(wanted)}), wanted)
            self.assertTrue(wanted.is_dir())
            self.assertEqual(slots.slots_folder(folder, {}), folder)

    def test_registry_crates_are_the_locked_packages_with_a_source(self):
        lock = ('version = 4\n\n[[package]]\nname = "burn-core"\nversion = "0.22.1"\n'
                'source = "registry+https://github.com/rust-lang/crates.io-index"\n\n'
                '[[package]]\nname = "mnist_lab"\nversion = "0.1.0"\n\n'
                '[[package]]\nname = "gemm"\nversion = "0.18.0"\nsource = "git+https://x"\n')
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "Cargo.lock").write_text(lock)
            crates = slots.registry_crates(Path(folder) / "Cargo.lock")
        self.assertEqual(crates, {"burn_core", "gemm"})
        deps = Path("x86_64-unknown-linux-gnu/debug/deps")
        self.assertTrue(slots.shared(deps, "libburn_core-0123456789abcdef.rlib", crates))
        self.assertTrue(slots.shared(deps, "libburn_core-0123456789abcdef.rmeta", crates))
        self.assertFalse(slots.shared(deps, "burn_core-0123456789abcdef.d", crates))
        self.assertFalse(slots.shared(deps, "libmnist_lab-0123456789abcdef.rlib", crates))
        self.assertFalse(slots.shared(Path("debug/build/x"), "libburn_core-0123456789abcdef.rlib", crates))


if __name__ == "__main__":
    unittest.main()
