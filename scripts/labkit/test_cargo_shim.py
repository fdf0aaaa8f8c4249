"""Unit tests of the cargo that rust-analyzer runs (cargo_shim.py), no kernel needed:

    python -m unittest labkit.test_cargo_shim      (with scripts/ on sys.path)

The metadata filter on made-up `cargo metadata` output, the `cargo tree` command built from
metadata's options, and `labkit cargo metadata` through real cargo (offline) on two small crates,
one with an optional dependency named only in a weak feature (`log?/std`, as Burn names its
backends): left out for a crate in a build slot, kept, as Cargo lists it, elsewhere.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from labkit import PACKAGE, ROOT
from labkit.cargo_shim import SLOTS_VARIABLE, in_slots, keep_built, tree_command


def package(name, version="1.0.0"):
    return {"id": f"registry+{name}@{version}", "name": name, "version": version}


def metadata(*names, members=("app",)):
    packages = [package(n) for n in names]
    ids = {p["name"]: p["id"] for p in packages}
    nodes = [{"id": p["id"], "deps": [{"pkg": i, "name": n} for n, i in ids.items() if n != p["name"]],
              "dependencies": [i for n, i in ids.items() if n != p["name"]]} for p in packages]
    return {"packages": packages, "workspace_members": [ids[m] for m in members],
            "resolve": {"nodes": nodes, "root": ids[members[0]]}}


class Filter(unittest.TestCase):
    def test_keeps_what_the_tree_lists_and_the_members(self):
        data = metadata("app", "burn", "cuda", "log")
        kept = keep_built(data, "burn v1.0.0\nlog v1.0.0 (proc-macro)\n")
        self.assertEqual([p["name"] for p in kept["packages"]], ["app", "burn", "log"])
        ids = {p["id"] for p in kept["packages"]}
        self.assertEqual({n["id"] for n in kept["resolve"]["nodes"]}, ids)
        for node in kept["resolve"]["nodes"]:
            self.assertTrue({d["pkg"] for d in node["deps"]} <= ids, node)
            self.assertTrue(set(node["dependencies"]) <= ids, node)
        self.assertEqual(kept["resolve"]["root"], data["resolve"]["root"])
        # The input is left as it was (the shim prints it as it came when the filter fails).
        self.assertEqual(len(data["packages"]), 4)

    def test_versions_must_match(self):
        data = metadata("app", "burn")
        with self.assertRaises(ValueError):  # burn v2 is another package: nothing left to keep
            keep_built(data, "burn v2.0.0\n")

    def test_nothing_to_go_by(self):
        for tree in ("", "app v1.0.0\n"):
            with self.subTest(tree=tree), self.assertRaises(ValueError):
                keep_built(metadata("app", "burn"), tree)
        without_resolve = dict(metadata("app", "burn"), resolve=None)
        with self.assertRaises(ValueError):
            keep_built(without_resolve, "burn v1.0.0\n")

    def test_malformed_metadata_raises_what_the_shim_catches(self):
        for data in ({}, {"packages": [], "workspace_members": []},
                     {"packages": [{"id": "x"}], "workspace_members": [], "resolve": {}}):
            with self.subTest(data=data), self.assertRaises((ValueError, KeyError, TypeError)):
                keep_built(data, "x v1.0.0\n")


class Commands(unittest.TestCase):
    def test_tree_takes_metadatas_build_options(self):
        args = ["metadata", "--format-version", "1", "--manifest-path", "/s/Cargo.toml",
                "--features", "a,b", "--filter-platform", "x86_64-unknown-linux-gnu",
                "--offline", "--all-features", "-Zunstable-options", "--color", "never"]
        tree = tree_command("cargo", args)
        self.assertEqual(tree[:8], ["cargo", "tree", "--edges", "normal,build,dev", "--prefix",
                                    "none", "--format", "{p}"])
        self.assertEqual(tree[8:], ["--manifest-path", "/s/Cargo.toml", "--features", "a,b",
                                    "--target", "x86_64-unknown-linux-gnu", "--offline",
                                    "--all-features", "-Zunstable-options"])

    def test_only_metadata_with_dependencies_in_a_slot_is_filtered(self):
        with tempfile.TemporaryDirectory() as folder:
            slots = Path(folder) / "slots"
            manifest = str(slots / "slot-1" / "kernel" / "Cargo.toml")
            self.assertTrue(in_slots(["metadata", "--manifest-path", manifest], str(slots)))
            self.assertFalse(in_slots(["metadata", "--no-deps", "--manifest-path", manifest], str(slots)))
            self.assertFalse(in_slots(["build", "--manifest-path", manifest], str(slots)))
            self.assertFalse(in_slots(["metadata", "--manifest-path", "/elsewhere/Cargo.toml"], str(slots)))
            self.assertFalse(in_slots(["metadata", "--manifest-path", manifest], None))

    def test_without_the_real_cargo_it_says_what_it_is(self):
        env = {k: v for k, v in os.environ.items() if k != "MNIST_LAB_REAL_CARGO"}
        out = subprocess.run([sys.executable, str(PACKAGE), "cargo", "metadata"], env=env,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 2)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        self.assertIn("MNIST_LAB_REAL_CARGO", out.stderr)


class ThroughCargo(unittest.TestCase):
    def test_a_weak_optional_dependency_is_left_out_in_a_slot_only(self):
        cargo = shutil.which("cargo")
        self.assertIsNotNone(cargo, "cargo is not on PATH")
        log = next(block for block in (ROOT / "Cargo.lock").read_text().split("[[package]]")
                   if '\nname = "log"\n' in block)
        version = log.split('version = "')[1].split('"')[0]
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            crates = {
                "a": f'[dependencies]\nlog = {{ version = "={version}", optional = true, '
                     'default-features = false }\n[features]\ndefault = ["std"]\nstd = ["log?/std"]\n',
                "b": '[dependencies]\na = { path = "../a" }\n',
            }
            for name, rest in crates.items():
                (folder / "slot-0" / name / "src").mkdir(parents=True)
                (folder / "slot-0" / name / "src" / "lib.rs").write_text("")
                (folder / "slot-0" / name / "Cargo.toml").write_text(
                    f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n{rest}'
                )
            manifest = folder / "slot-0" / "b" / "Cargo.toml"

            def listed(slots):
                env = dict(os.environ, MNIST_LAB_REAL_CARGO=cargo, **{SLOTS_VARIABLE: str(slots)})
                out = subprocess.run(
                    [sys.executable, str(PACKAGE), "cargo", "metadata",
                     "--format-version", "1", "--manifest-path", str(manifest), "--offline"],
                    env=env, capture_output=True, text=True, timeout=300,
                )
                self.assertEqual(out.returncode, 0, f"cargo metadata through the shim: {out.stderr}")
                return sorted(p["name"] for p in json.loads(out.stdout)["packages"])

            self.assertEqual(listed(folder / "elsewhere"), ["a", "b", "log"])
            self.assertEqual(listed(folder), ["a", "b"])


if __name__ == "__main__":
    unittest.main()
