"""Tests of evcxr_release.py: the download of evcxr's release binary, its checks, and the
fall-back to `cargo install`.

    python scripts/labkit test --no-kernel      (with the other tests that need no kernel)
    python -m unittest labkit.test_evcxr_release      (with scripts/ on sys.path)

A local HTTP server on 127.0.0.1 serves a tarball that the test makes, laid out as evcxr's
releases are (`evcxr_jupyter-v0.22.0-<triple>/evcxr_jupyter`), whose program is a small
Jupyter kernel (ipykernel, which JupyterLab brings) that answers kernel_info with the version
the test gives it, as evcxr_jupyter does. The checksums are the test's own, computed from the
tarball, in a table file of the repository's format; everything else is the code set-up runs.
The installer of the fall-back is a recorder: `cargo install` itself never runs here.
"""

import contextlib
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import unittest
import unittest.mock
from pathlib import Path

from labkit import evcxr_release

TRIPLE = "x86_64-unknown-linux-gnu"
VERSION = "0.22.0"

#: The fake evcxr_jupyter: `--control_file FILE` starts a kernel that reports `{version}`.
FAKE = """#!{python}
import sys
if sys.argv[1:2] != ["--control_file"]:
    print("To install, run:\\n  evcxr_jupyter --install")
    sys.exit(0)
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

class FakeEvcxr(Kernel):
    implementation = "evcxr"
    implementation_version = {version!r}
    language_info = {{"name": "rust"}}
    banner = "a test's stand-in for evcxr_jupyter"

IPKernelApp.launch_instance(kernel_class=FakeEvcxr, argv=["-f", sys.argv[2]])
"""


#: A program that does not run here, as a binary built against a newer C library than this
#: system's does not.
BROKEN = """#!/bin/sh
echo "evcxr_jupyter: /lib/x86_64-linux-gnu/libc.so.6: version GLIBC_2.99 not found" >&2
exit 1
"""


def tarball(version, program=FAKE):
    """A release tarball as evcxr's release workflow makes it, with the fake inside."""
    stem = f"evcxr_jupyter-v{VERSION}-{TRIPLE}"
    data = program.format(python=sys.executable, version=version).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        info = tarfile.TarInfo(f"{stem}/evcxr_jupyter")
        info.size, info.mode = len(data), 0o755
        t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Server:
    """An HTTP server on 127.0.0.1 serving `files` ({name: bytes}); counts the requests."""

    def __init__(self, files):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = files.get(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v{{version}}/{{asset}}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url():
    """A URL on 127.0.0.1 where nothing answers (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v{{version}}/{{asset}}"


class Download(unittest.TestCase):
    def setUp(self):
        self.folder = Path(tempfile.mkdtemp(prefix="evcxr-release-test-"))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.dest = self.folder / "bin"
        self.installs = []
        # A proxy in the environment must not see the local server.
        local = unittest.mock.patch.dict(os.environ, {"no_proxy": "127.0.0.1,localhost",
                                                      "NO_PROXY": "127.0.0.1,localhost"})
        local.start()
        self.addCleanup(local.stop)

    def table(self, sha256):
        path = self.folder / "checksums.json"
        path.write_text(json.dumps({"url": "unused", "releases": {VERSION: {TRIPLE: sha256}}}))
        return path

    def installer(self):
        self.installs.append(True)
        return True

    def ensure(self, checksums, url):
        """Runs set-up's code path; returns what it did and what it printed."""
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            done = evcxr_release.ensure(self.dest, "0.22", installer=self.installer,
                                        checksums=checksums, url=url, triple=TRIPLE)
        return done, printed.getvalue()

    def serve(self, version=VERSION, program=FAKE):
        body = tarball(version, program)
        server = Server({evcxr_release.asset(VERSION, TRIPLE): body})
        self.addCleanup(server.close)
        return server, hashlib.sha256(body).hexdigest()

    def assert_fell_back(self, printed, why):
        lines = printed.splitlines()
        self.assertEqual(len(lines), 1, printed)
        self.assertRegex(lines[0], why)
        self.assertIn("building evcxr_jupyter 0.22 from source with `cargo install`", lines[0])
        self.assertEqual(self.installs, [True], "the fall-back's installer should run once")
        # Nothing half-written: no program, no version file, no download folder.
        left = sorted(p.name for p in self.dest.iterdir()) if self.dest.exists() else []
        self.assertEqual(left, [], left)

    def test_a_good_checksum_installs_and_checks_the_program(self):
        server, sha256 = self.serve()
        done, printed = self.ensure(self.table(sha256), server.url)
        self.assertEqual(done, "download", printed)
        self.assertEqual(self.installs, [])
        self.assertEqual(server.requests, [f"/v{VERSION}/{evcxr_release.asset(VERSION, TRIPLE)}"])
        program = self.dest / "evcxr_jupyter"
        self.assertTrue(os.access(program, os.X_OK), printed)
        self.assertEqual((self.dest / "evcxr_jupyter.version").read_text(), "0.22.0\n")
        self.assertEqual(sorted(p.name for p in self.dest.iterdir()),
                         ["evcxr_jupyter", "evcxr_jupyter.version"])
        self.assertIn("its SHA-256 checked, and it runs here", printed)
        # The installed program is the one checked: it answers as a kernel again.
        self.assertEqual(evcxr_release.reported_version(program), VERSION)

    def test_a_bad_checksum_is_refused(self):
        server, sha256 = self.serve()
        wrong = hashlib.sha256(b"another tarball").hexdigest()
        done, printed = self.ensure(self.table(wrong), server.url)
        self.assertEqual(done, "source")
        self.assert_fell_back(printed, rf"^setup: the SHA-256 of http://127\.0\.0\.1:\d+/\S+ is "
                                       rf"{sha256}, not the {wrong} recorded for {TRIPLE} .*: refused")

    def test_a_program_of_another_version_is_refused(self):
        server, sha256 = self.serve(version="0.21.0")
        done, printed = self.ensure(self.table(sha256), server.url)
        self.assertEqual(done, "source")
        self.assert_fell_back(printed, r"^setup: the downloaded evcxr_jupyter reports version "
                                       r"0\.21\.0, not the 0\.22\.x the notebooks are tested with")

    def test_a_program_that_does_not_run_here_is_refused(self):
        server, sha256 = self.serve(program=BROKEN)
        done, printed = self.ensure(self.table(sha256), server.url)
        self.assertEqual(done, "source")
        self.assert_fell_back(printed, r"^setup: the downloaded evcxr_jupyter does not run here "
                                       r"as a kernel \(evcxr_jupyter: .*GLIBC_2\.99 not found\): "
                                       r"refused")

    def test_nothing_answering_falls_back(self):
        sha256 = hashlib.sha256(tarball(VERSION)).hexdigest()
        done, printed = self.ensure(self.table(sha256), closed_port_url())
        self.assertEqual(done, "source")
        self.assert_fell_back(printed, r"^setup: could not download http://127\.0\.0\.1:\d+/"
                                       r"v0\.22\.0/evcxr_jupyter-v0\.22\.0-x86_64-unknown-linux-gnu"
                                       r"\.tar\.gz \(.*refused.*\)")

    def test_no_recorded_checksum_downloads_nothing(self):
        server, _ = self.serve()
        done, printed = self.ensure(self.table(""), server.url)
        self.assertEqual(done, "source")
        self.assertEqual(server.requests, [])
        self.assert_fell_back(printed, rf"^setup: no checksum recorded for {TRIPLE} "
                                       rf"\(evcxr_jupyter 0\.22\.0, .*checksums\.json\)")

    def test_a_failed_fall_back_is_an_error(self):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), self.assertRaises(evcxr_release.Refused) as e:
            evcxr_release.ensure(self.dest, "0.22", installer=lambda: False,
                                 checksums=self.table(""), url=closed_port_url(), triple=TRIPLE)
        self.assertIn("cargo install evcxr_jupyter --version ~0.22` failed", str(e.exception))


class Table(unittest.TestCase):
    def test_the_repositorys_table_names_the_published_platforms(self):
        """Every entry is a SHA-256 or empty (none recorded), for the three platforms evcxr
        publishes binaries for, and the URL pattern is evcxr's releases on GitHub."""
        pattern, releases = evcxr_release.load_table(evcxr_release.CHECKSUMS)
        self.assertEqual(pattern, "https://github.com/evcxr/evcxr/releases/download/"
                                  "v{version}/{asset}")
        version = evcxr_release.newest(releases, evcxr_release.SERIES)
        self.assertIsNotNone(version)
        for host in (("Linux", "x86_64"), ("Darwin", "arm64"), ("Windows", "AMD64")):
            self.assertIn(evcxr_release.target(*host), releases[version])
        for triple, sha256 in releases[version].items():
            self.assertRegex(sha256, r"^([0-9a-f]{64})?$", triple)

    def test_the_newest_of_a_series(self):
        releases = {"0.21.1": "", "0.22.0": "", "0.22.10": "", "0.22.2": "", "0.3.0": ""}
        self.assertEqual(evcxr_release.newest(releases, "0.22"), "0.22.10")
        self.assertIsNone(evcxr_release.newest(releases, "0.23"))
        self.assertEqual(evcxr_release.asset("0.22.0", "x86_64-pc-windows-msvc"),
                         "evcxr_jupyter-v0.22.0-x86_64-pc-windows-msvc.zip")
        self.assertIsNone(evcxr_release.target("Linux", "aarch64"))

    def test_an_unreadable_table_is_one_line(self):
        with tempfile.TemporaryDirectory() as folder:
            broken = Path(folder) / "broken.json"
            broken.write_text("{")
            with self.assertRaises(evcxr_release.Refused) as e:
                evcxr_release.load_table(broken)
        self.assertTrue(re.match(r"the checksum table .*broken\.json cannot be read",
                                 str(e.exception)), e.exception)
        self.assertNotIn("\n", str(e.exception))


def run():
    """Runs these tests; returns whether they all passed."""
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case)
                               for case in (Download, Table))
    return unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()


if __name__ == "__main__":
    unittest.main()
