#!/usr/bin/env python3
"""Side-by-side training speed of mnist_lab (Burn) and PyTorch on the CPU.

Runs `mnist-lab bench` and `bench/torch_bench.py` on the same data with the same settings
(the lecture's four models, batch 100, SGD lr 0.001, the same thread count), model by
model and alternating which goes first, for several rounds in one sitting. Each figure is
the median over the rounds of each run's median; each ratio (Rust / PyTorch) is the median
of the per-round ratios. Prints a Markdown table and writes every number to a JSON file.

Usage (see bench/README.md):

    bench/.venv/bin/python bench/compare.py --data ../shared/data/mnist-mini --peak-gflops 520
    bench/.venv/bin/python bench/compare.py --quick          # smoke: a few steps per model

Needs only the Python standard library itself; PyTorch must be installed in the
interpreter given by --python (bench/.venv by default).
"""

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ["fc", "fc-relu", "conv", "conv2"]
FILES = [
    ("train-images-idx3-ubyte.gz", 8000, True),
    ("train-labels-idx1-ubyte.gz", 8000, False),
    ("t10k-images-idx3-ubyte.gz", 2000, True),
    ("t10k-labels-idx1-ubyte.gz", 2000, False),
]


def write_random_idx(folder):
    """Random MNIST-shaped IDX files, for when no data folder is at hand (speed does not
    depend on the pixel values)."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(42)
    for name, n, images in FILES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            continue
        if images:
            header = (2051).to_bytes(4, "big") + b"".join(
                v.to_bytes(4, "big") for v in (n, 28, 28)
            )
            body = bytes(rng.randrange(256) for _ in range(n * 784))
        else:
            header = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
            body = bytes(rng.randrange(10) for _ in range(n))
        with gzip.open(path, "wb") as f:
            f.write(header + body)
    return folder


def pick_data(arg, out_dir):
    if arg:
        return arg
    for candidate in (
        os.environ.get("MNIST_LAB_DATA"),
        os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist-mini"),
        os.path.expanduser("~/.cache/mnist_lab/mnist"),
    ):
        if candidate and os.path.exists(os.path.join(candidate, FILES[0][0])):
            return candidate
    return write_random_idx(os.path.join(out_dir, "random-idx"))


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_json(cmd, env):
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"error: {' '.join(cmd)} failed with status {proc.returncode}")
    text = proc.stdout
    report = json.loads(text[text.index("{") :])
    report["wall_seconds"] = time.perf_counter() - started
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="folder with the four MNIST IDX files (default: "
                   "MNIST_LAB_DATA, ../shared/data/mnist-mini, the mnist_lab cache, "
                   "else random images)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="alternating Rust/PyTorch rounds")
    p.add_argument("--runs", type=int, default=5, help="timed runs per figure, per round")
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="the CPU's peak GFLOP/s, for the %%-of-peak column "
                        "(bench/README.md measures the lab machine's)")
    p.add_argument("--quick", action="store_true", help="smoke run: a few steps, 1 round")
    p.add_argument("--python", default=os.path.join(HERE, ".venv", "bin", "python"))
    p.add_argument("--rust-bin", default=None,
                   help="the mnist-lab binary (default: build it with cargo --release)")
    p.add_argument("--cargo-args", default="",
                   help="extra cargo build arguments, e.g. '--features burn/x86-v4'")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-out", "compare.json"))
    args = p.parse_args()
    if args.quick:
        args.rounds = 1

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    data = pick_data(args.data, out_dir)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    rust_bin = args.rust_bin
    if rust_bin is None:
        cmd = ["cargo", "build", "--release", "-p", "mnist_lab_cli"]
        cmd += args.cargo_args.split()
        subprocess.run(cmd, cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        rust_bin = os.path.join(target, "release", "mnist-lab")

    common = ["--warmup-steps", str(args.warmup_steps), "--runs", str(args.runs)]
    if args.quick:
        common = ["--quick"]
    if args.peak_gflops:
        common += ["--peak-gflops", str(args.peak_gflops)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    rounds = []
    for r in range(args.rounds):
        for i, model in enumerate(models):
            rust_cmd = [rust_bin, "bench", "--data", data, "--threads", str(args.threads),
                        "--models", model] + common
            torch_cmd = [args.python, os.path.join(HERE, "torch_bench.py"), "--data", data,
                         "--threads", str(args.threads), "--models", model] + common
            order = [("rust", rust_cmd), ("torch", torch_cmd)]
            if (r + i) % 2 == 1:
                order.reverse()
            entry = {"round": r + 1, "model": model}
            for who, cmd in order:
                entry[f"{who}_load_before"] = loadavg()
                entry[who] = run_json(cmd, env)
            rounds.append(entry)
            rs, ts = entry["rust"]["models"][0], entry["torch"]["models"][0]
            print(
                f"round {r + 1} {model:8} rust {rs['train_images_per_second']:9,.0f}  "
                f"torch {ts['train_images_per_second']:9,.0f}  "
                f"ratio {rs['train_images_per_second'] / ts['train_images_per_second']:.2f}  "
                f"(load {entry['rust_load_before']:.1f})",
                file=sys.stderr,
            )

    summary = []
    for model in models:
        entries = [e for e in rounds if e["model"] == model]
        rs = [e["rust"]["models"][0] for e in entries]
        ts = [e["torch"]["models"][0] for e in entries]
        med = lambda xs: statistics.median(xs)  # noqa: E731
        row = {
            "model": model,
            "forward_macs": rs[0]["forward_macs"],
            "rust_train_images_per_second": med([m["train_images_per_second"] for m in rs]),
            "torch_train_images_per_second": med([m["train_images_per_second"] for m in ts]),
            "train_ratio": med([a["train_images_per_second"] / b["train_images_per_second"]
                                for a, b in zip(rs, ts)]),
            "rust_eval_images_per_second": med([m["eval_images_per_second"] for m in rs]),
            "torch_eval_images_per_second": med([m["eval_images_per_second"] for m in ts]),
            "eval_ratio": med([a["eval_images_per_second"] / b["eval_images_per_second"]
                               for a, b in zip(rs, ts)]),
        }
        row["rust_train_gflops"] = row["rust_train_images_per_second"] * row["forward_macs"] * 6 / 1e9
        row["torch_train_gflops"] = row["torch_train_images_per_second"] * row["forward_macs"] * 6 / 1e9
        if args.peak_gflops:
            row["rust_percent_of_peak"] = 100 * row["rust_train_gflops"] / args.peak_gflops
            row["torch_percent_of_peak"] = 100 * row["torch_train_gflops"] / args.peak_gflops
        summary.append(row)

    first = rounds[0]
    result = {
        "data": data,
        "threads": args.threads,
        "rounds": args.rounds,
        "peak_gflops": args.peak_gflops,
        "rust": {k: first["rust"][k] for k in ("framework", "device", "threads", "cpu")},
        "torch": {k: first["torch"][k] for k in ("framework", "device", "threads")},
        "summary": summary,
        "raw": rounds,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)

    peak = args.peak_gflops
    print(f"\n{result['rust']['framework']} vs {result['torch']['framework']}, "
          f"{args.threads} threads, batch 100, {args.rounds} round(s), data {data}\n")
    print("| model | Rust train img/s | PyTorch train img/s | ratio | Rust GFLOP/s | "
          + ("% of peak | " if peak else "")
          + "Rust eval img/s | PyTorch eval img/s | eval ratio |")
    print("|---|---:|---:|---:|---:|" + ("---:|" if peak else "") + "---:|---:|---:|")
    for row in summary:
        print(
            f"| {row['model']} | {row['rust_train_images_per_second']:,.0f} | "
            f"{row['torch_train_images_per_second']:,.0f} | {row['train_ratio']:.2f}x | "
            f"{row['rust_train_gflops']:.0f} | "
            + (f"{row['rust_percent_of_peak']:.0f} % | " if peak else "")
            + f"{row['rust_eval_images_per_second']:,.0f} | "
            f"{row['torch_eval_images_per_second']:,.0f} | {row['eval_ratio']:.2f}x |"
        )
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
