"""Unit tests of the proxy's marker lines (proxy.py), no kernel needed:

    python -m unittest labkit.test_proxy      (with scripts/ on sys.path)

A stdout line `MNIST_LAB_DISPLAY {...}` becomes a display_data or update_display_data; any
other line, a malformed marker line included, stays text, in the order the lines came. evcxr
0.22 sends each line of the cells' stdout as a stream message of its own, so a marker line is
never split across messages (see proxy.py); a message of several lines, or a last line
without its newline, is handled line by line.
"""

import json
import unittest

from labkit.proxy import MARKER, marker_display, stream_parts


def marker(**fields):
    return MARKER + json.dumps(fields) + "\n"


class MarkerLines(unittest.TestCase):
    def test_a_marker_line_is_a_display(self):
        kind, content = marker_display(marker(id="bar", update=False, data={"text/plain": "1"}))
        self.assertEqual(kind, "display_data")
        self.assertEqual(content, {"data": {"text/plain": "1"}, "metadata": {},
                                   "transient": {"display_id": "bar"}})

    def test_update_true_is_an_update_and_ids_become_strings(self):
        kind, content = marker_display(marker(id=7, update=True, data={"text/html": "<b>2</b>"}))
        self.assertEqual(kind, "update_display_data")
        self.assertEqual(content["transient"], {"display_id": "7"})
        self.assertEqual(content["data"], {"text/html": "<b>2</b>"})

    def test_without_update_it_is_a_new_display(self):
        kind, _ = marker_display(marker(id="a", data={"text/plain": "x"}))
        self.assertEqual(kind, "display_data")

    def test_malformed_lines_are_not_markers(self):
        for line in (
            "MNIST_LAB_DISPLAY not json\n",
            MARKER + "{\"id\": \"a\", \"data\": {\"text/plain\": \n",  # cut short
            marker(data={"text/plain": "no id"}),
            marker(id="no data"),
            marker(id="a", data="not a dict"),
            MARKER + "[1, 2]\n",
            "  " + marker(id="a", data={"text/plain": "indented"}),
            "MNIST_LAB_DISPLAY{\"id\":\"a\",\"data\":{}}\n",  # no space after the marker
            "plain text\n",
            "",
        ):
            with self.subTest(line=line):
                self.assertIsNone(marker_display(line))

    def test_a_last_line_without_newline_is_still_read(self):
        kind, _ = marker_display(marker(id="a", data={"text/plain": "x"}).rstrip("\n"))
        self.assertEqual(kind, "display_data")


class Streams(unittest.TestCase):
    def test_text_and_markers_keep_their_order(self):
        text = ("before\n" + marker(id="p", data={"text/plain": "1"}) + "middle 1\nmiddle 2\n"
                + marker(id="p", update=True, data={"text/plain": "2"}) + "after\n")
        parts = stream_parts(text)
        self.assertEqual([kind for kind, _ in parts],
                         ["stream", "display_data", "stream", "update_display_data", "stream"])
        self.assertEqual([c["text"] for kind, c in parts if kind == "stream"],
                         ["before\n", "middle 1\nmiddle 2\n", "after\n"])
        self.assertTrue(all(c == {"name": "stdout", "text": c["text"]}
                            for kind, c in parts if kind == "stream"))

    def test_a_malformed_marker_stays_text_in_its_place(self):
        text = "a\nMNIST_LAB_DISPLAY {oops\nb\n"
        self.assertEqual(stream_parts(text), [("stream", {"name": "stdout", "text": text})])

    def test_one_line_per_message_as_evcxr_sends_them(self):
        lines = ["epoch 1\n", marker(id="bar", data={"text/plain": "[#   ]"}),
                 marker(id="bar", update=True, data={"text/plain": "[##  ]"}), "done\n"]
        kinds = [kind for line in lines for kind, _ in stream_parts(line)]
        self.assertEqual(kinds, ["stream", "display_data", "update_display_data", "stream"])

    def test_only_markers_leave_no_empty_stream(self):
        parts = stream_parts(marker(id="a", data={"text/plain": "1"}) * 2)
        self.assertEqual([kind for kind, _ in parts], ["display_data", "display_data"])

    def test_no_marker_text_reaches_a_stream(self):
        text = "x\n" + marker(id="secret-id", data={"text/plain": "1"}) + "y"
        streams = "".join(c["text"] for kind, c in stream_parts(text) if kind == "stream")
        self.assertEqual(streams, "x\ny")


if __name__ == "__main__":
    unittest.main()
