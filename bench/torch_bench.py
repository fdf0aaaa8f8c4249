#!/usr/bin/env python3
"""PyTorch twin of `mnist-lab bench`: training and evaluation images/s of the lecture's
four models, on the CPU (or an NVIDIA GPU: --device cuda), printed as JSON in the same schema.

The models, the optimiser and the loop are the lecture's: Linear 784-600-600-10 (fc),
the same with ReLU (fc-relu), Conv2d(1, 10, 7) in front (conv), and Conv2d(10, 55, 2)
after that (conv2); cross-entropy loss, plain SGD at lr 0.001, batches of 100, pixels
scaled by 1/255. The images are read once from the four MNIST IDX files (gzip or raw)
into one float tensor, as `mnist-lab` keeps them in memory; each step gathers a shuffled
batch from it (a copy, like the Rust batcher).

Every figure is the median of `--runs` timed runs of `--steps` steps each, after
`--warmup-steps` untimed steps. GFLOP/s count forward multiply-accumulates x 6 per trained
image (x 2 per evaluated image).

Usage (see bench/README.md):

    bench/.venv/bin/python bench/torch_bench.py --data ../shared/data/mnist-mini
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn

MODELS = ["fc", "fc-relu", "conv", "conv2"]


def forward_macs(kind, hidden=600):
    """Multiply-accumulates of one image's forward pass (as ModelKind::forward_macs)."""
    mlp = lambda inputs: inputs * hidden + hidden * hidden + hidden * 10  # noqa: E731
    return {
        "fc": mlp(784),
        "fc-relu": mlp(784),
        "conv": 10 * 22 * 22 * 49 + mlp(4840),
        "conv2": 10 * 22 * 22 * 49 + 55 * 21 * 21 * 10 * 4 + mlp(24255),
    }[kind]


class FcNet(nn.Module):
    def __init__(self, input_size=784, hidden=600, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = x.reshape(x.size(0), -1)
        return self.fc3(self.fc2(self.fc1(x)))


class FcReluNet(nn.Module):
    def __init__(self, input_size=784, hidden=600, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = x.reshape(x.size(0), -1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class ConvNet(nn.Module):
    def __init__(self, hidden=600, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 7)
        self.fc1 = nn.Linear(10 * 22 * 22, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.conv1(x).reshape(x.size(0), -1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class Conv2Net(nn.Module):
    def __init__(self, hidden=600, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 7)
        self.conv2 = nn.Conv2d(10, 55, 2)
        self.fc1 = nn.Linear(55 * 21 * 21, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.conv2(self.conv1(x)).reshape(x.size(0), -1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def make_model(kind, hidden):
    return {
        "fc": lambda: FcNet(hidden=hidden),
        "fc-relu": lambda: FcReluNet(hidden=hidden),
        "conv": lambda: ConvNet(hidden=hidden),
        "conv2": lambda: Conv2Net(hidden=hidden),
    }[kind]()


def find(folder, name):
    """The path of MNIST file `name` in `folder`: gzip, raw, or Kaggle's spelling."""
    raw = name[: -len(".gz")]
    for candidate in (name, raw, raw.replace("-idx", ".idx", 1)):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise SystemExit(f"error: {folder} has no {name}")


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8)
    return body.reshape(dims)


def load_split(folder, images_name, labels_name):
    images = read_idx(find(folder, images_name)).float().div_(255.0).unsqueeze(1)
    labels = read_idx(find(folder, labels_name)).long()
    return images.contiguous(), labels


def median_rate(rates):
    return statistics.median(rates) if rates else 0.0


def bench_model(kind, data, args):
    train_x, train_y, test_x, test_y = data
    b = args.batch_size
    torch.manual_seed(args.seed)
    model = make_model(kind, args.hidden_size).to(args.device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate)

    generator = torch.Generator().manual_seed(args.seed)
    state = {"perm": torch.randperm(len(train_y), generator=generator), "pos": 0}

    def next_batch():
        # Shuffled batches, a new permutation every epoch, the last partial batch kept.
        if state["pos"] >= len(train_y):
            state["perm"] = torch.randperm(len(train_y), generator=generator)
            state["pos"] = 0
        idx = state["perm"][state["pos"] : state["pos"] + b].to(train_y.device)
        state["pos"] += b
        return train_x.index_select(0, idx), train_y.index_select(0, idx)

    model.train()

    def train_steps(n):
        images_done = 0
        for _ in range(n):
            images, labels = next_batch()
            outputs = model(images)
            loss = criterion(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()  # the Rust loop reads every loss (for its NaN check)
            if value != value:
                raise SystemExit(f"error: {kind} diverged")
            images_done += len(labels)
        return images_done

    train_steps(args.warmup_steps)
    train_runs = []
    for _ in range(args.runs):
        start = time.perf_counter()
        n = train_steps(args.steps)
        train_runs.append(n / (time.perf_counter() - start))

    model.eval()
    test_batches = [
        (test_x[i : i + b], test_y[i : i + b]) for i in range(0, len(test_y), b)
    ]
    eval_pos = {"i": 0}

    def eval_steps(n):
        images_done = correct = 0
        with torch.no_grad():
            for _ in range(n):
                images, labels = test_batches[eval_pos["i"] % len(test_batches)]
                eval_pos["i"] += 1
                predicted = model(images).argmax(1)
                correct += int((predicted == labels).sum().item())
                images_done += len(labels)
        return images_done

    eval_steps(max(1, args.warmup_steps // 2))
    eval_runs = []
    for _ in range(args.runs):
        start = time.perf_counter()
        n = eval_steps(args.eval_steps)
        eval_runs.append(n / (time.perf_counter() - start))

    macs = forward_macs(kind, args.hidden_size)
    train_rate, eval_rate = median_rate(train_runs), median_rate(eval_runs)
    result = {
        "model": kind,
        "forward_macs": macs,
        "train_images_per_second": train_rate,
        "train_runs": train_runs,
        "train_gflops": train_rate * macs * 6 / 1e9,
        "eval_images_per_second": eval_rate,
        "eval_runs": eval_runs,
        "eval_gflops": eval_rate * macs * 2 / 1e9,
    }
    if args.peak_gflops:
        result["train_percent_of_peak"] = 100 * result["train_gflops"] / args.peak_gflops
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="folder with the four MNIST IDX files")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--hidden-size", type=int, default=600)
    p.add_argument("--learning-rate", type=float, default=0.001)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--steps", type=int, default=None, help="steps per timed run")
    p.add_argument("--eval-steps", type=int, default=None, help="batches per eval run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--peak-gflops", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="a few steps per model (smoke)")
    p.add_argument("--json", help="also write the JSON to this file")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda for an NVIDIA GPU (the data then lives on the GPU, as in Burn)",
    )
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but this PyTorch sees no CUDA GPU")
    if args.quick:
        args.warmup_steps, args.runs = 2, 2
        args.steps = args.steps or 3
        args.eval_steps = args.eval_steps or 3
    if not args.data:
        args.data = os.environ.get("MNIST_LAB_DATA")
    if not args.data:
        raise SystemExit("error: pass --data FOLDER (the four MNIST IDX files)")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    data = (
        *load_split(args.data, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        *load_split(args.data, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    )
    data = tuple(tensor.to(args.device) for tensor in data)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    results = []
    for kind in models:
        if kind not in MODELS:
            raise SystemExit(f"error: unknown model {kind}; use {', '.join(MODELS)}")
        # Default steps per run: about the same work for every model.
        steps = args.steps or {"fc": 100, "fc-relu": 100, "conv": 40, "conv2": 12}[kind]
        eval_steps = args.eval_steps or {"fc": 100, "fc-relu": 100, "conv": 50, "conv2": 20}[kind]
        sub = argparse.Namespace(**{**vars(args), "steps": steps, "eval_steps": eval_steps})
        result = bench_model(kind, data, sub)
        result["steps_per_run"], result["eval_steps_per_run"] = steps, eval_steps
        results.append(result)
        print(
            f"{kind}: train {result['train_images_per_second']:,.0f} images/s, "
            f"eval {result['eval_images_per_second']:,.0f} images/s",
            file=sys.stderr,
        )
    report = {
        "tool": "bench/torch_bench.py",
        "framework": f"pytorch {torch.__version__}",
        "device": (
            f"cuda ({torch.cuda.get_device_name(args.device)})"
            if args.device.startswith("cuda")
            else "cpu"
        ),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "hidden_size": args.hidden_size,
        "learning_rate": args.learning_rate,
        "data": args.data,
        "train_images": len(data[1]),
        "warmup_steps": args.warmup_steps,
        "runs": args.runs,
        "peak_gflops": args.peak_gflops,
        "cpu": platform.processor() or platform.machine(),
        "models": results,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
