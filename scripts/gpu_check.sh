#!/usr/bin/env bash
# The GPU path on a machine with a GPU, in one command (under 10 minutes on a workstation):
#
#   1. builds `mnist-lab` (release) with the `wgpu` feature, and `cuda` too where an NVIDIA
#      driver is there (its LLVM from PyPI first: `cargo xtask cuda-llvm`); then the checks
#      against the CPU on each GPU backend built (tests/cuda.rs with `--include-ignored`,
#      tests/wgpu.rs: same starting weights, per-step losses, accuracy), in the same build;
#   2. `mnist-lab bench` on each GPU backend built (training and evaluation images/s);
#   3. the headless lecture on the GPU, and on the CPU for comparison (mnist-mini: 8,000
#      training images, 22 epochs in all);
#   4. bench/torch_bench.py with CUDA for the same four models, where a PyTorch with CUDA is
#      there (bench/.venv, else python3);
#   5. one table: GPU images/s of Rust and PyTorch, their ratio, and the lecture's test
#      accuracies on the GPU next to the CPU's. It is also written to OUT/gpu_check.md.
#
# Usage: scripts/gpu_check.sh [--quick] [--data DIR] [--out DIR] [--bin FILE]
#   --quick     a smoke run (bench --quick, the lecture cut to 20 steps a run): checks the
#               script and the plumbing, e.g. on lavapipe; its figures mean nothing
#   --data DIR  MNIST folder [default: MNIST_LAB_DATA, else ../shared/data/mnist-mini]
#   --out DIR   where the reports go [default: gpu-check-out]
#   --bin FILE  a `mnist-lab` built elsewhere with `--features wgpu` (release), for a GPU
#               machine without Rust: step 1 is skipped
#
# Nothing is made up: a step that cannot run (no CUDA, no PyTorch) says why, and its
# columns read "n/a".
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
PREBUILT=""
DATA="${MNIST_LAB_DATA:-}"
OUT=gpu-check-out
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --data) DATA="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --bin) PREBUILT="$2"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$DATA" ] && [ -d ../shared/data/mnist-mini ]; then
  DATA=$(cd ../shared/data/mnist-mini && pwd)
fi
if [ -z "$DATA" ] || [ ! -d "$DATA" ]; then
  echo "gpu_check: pass --data DIR (a folder with the four MNIST files, mnist-mini or" \
    "full MNIST) or set MNIST_LAB_DATA" >&2
  exit 2
fi
mkdir -p "$OUT"
START=$(date +%s)
say() { printf '\n== %s (%ds)\n' "$1" $(($(date +%s) - START)); }

# 1. Build. One binary holds every backend built (flex for the CPU column too).
BIN="$OUT/mnist-lab-gpu"
FEATURES=wgpu
CUDA_NOTE=""
if [ -n "$PREBUILT" ]; then
  say "using the prebuilt $PREBUILT (wgpu)"
  cp "$PREBUILT" "$BIN"
  CUDA_NOTE="not built: this machine has no Rust (build with --features wgpu,cuda elsewhere)"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  say "the LLVM for the cuda build, then mnist-lab with --features wgpu,cuda (log: $OUT/build-cuda.log)"
  if cargo xtask cuda-llvm >"$OUT/build-cuda.log" 2>&1 && tail -n 1 "$OUT/build-cuda.log" \
      && cargo build --release -p mnist_lab_cli --features wgpu,cuda \
        >>"$OUT/build-cuda.log" 2>&1; then
    FEATURES=wgpu,cuda
  else
    CUDA_NOTE="the cuda build failed (see $OUT/build-cuda.log)"
    echo "$CUDA_NOTE: going on with wgpu alone"
  fi
else
  CUDA_NOTE="no NVIDIA driver (nvidia-smi) here"
fi
if [ -z "$PREBUILT" ]; then
  if [ "$FEATURES" = wgpu ]; then
    say "building mnist-lab with --features wgpu (log: $OUT/build-wgpu.log)"
    cargo build --release -p mnist_lab_cli --features wgpu >"$OUT/build-wgpu.log" 2>&1 \
      || { tail -n 30 "$OUT/build-wgpu.log"; exit 1; }
  fi
  # A copy, so that a later plain build does not replace the binary under us.
  cp target/release/mnist-lab "$BIN"
  # The checks against the CPU, in the same release build. A failure is reported in the
  # table's notes and the run goes on to measure.
  TESTS=(--test wgpu)
  [[ "$FEATURES" == *cuda* ]] && TESTS+=(--test cuda)
  say "the GPU checks: cargo test ${TESTS[*]} -- --include-ignored (log: $OUT/checks.log)"
  if cargo test --release -p mnist_lab_cli --features "$FEATURES" "${TESTS[@]}" \
      -- --include-ignored --test-threads 1 >"$OUT/checks.log" 2>&1; then
    CHECKS_NOTE="passed: ${TESTS[*]}"
  else
    CHECKS_NOTE="FAILED (see $OUT/checks.log)"
  fi
  grep -E '^test result|^test .*(FAILED|ok)$' "$OUT/checks.log" || true
else
  CHECKS_NOTE="not run: the prebuilt binary has no tests"
fi

DEVICES=()
[[ "$FEATURES" == *cuda* ]] && DEVICES+=(cuda)
DEVICES+=(wgpu)
LECTURE_DEVICE=${DEVICES[0]}

# 2. Bench on each GPU backend.
BENCH_ARGS=()
[ "$QUICK" = 1 ] && BENCH_ARGS+=(--quick)
for device in "${DEVICES[@]}"; do
  say "mnist-lab bench --device $device"
  if ! "$BIN" bench --device "$device" --data "$DATA" --json "$OUT/bench-$device.json" \
      "${BENCH_ARGS[@]}" >"$OUT/bench-$device.log" 2>&1; then
    echo "bench on $device failed:"; tail -n 5 "$OUT/bench-$device.log"
    rm -f "$OUT/bench-$device.json"
  else
    grep -m1 -E 'training on|software renderer' "$OUT/bench-$device.log" || true
  fi
done

# 3. The lecture on the GPU and on the CPU.
LECTURE_ARGS=(--data "$DATA")
[ "$QUICK" = 1 ] && LECTURE_ARGS+=(--max-steps 20)
for device in "$LECTURE_DEVICE" cpu; do
  say "mnist-lab lecture --device $device"
  if "$BIN" lecture --device "$device" --out "$OUT/lecture-$device" "${LECTURE_ARGS[@]}" \
      >"$OUT/lecture-$device.log" 2>&1; then
    head -n 1 "$OUT/lecture-$device.log"
  else
    echo "lecture on $device failed:"; tail -n 5 "$OUT/lecture-$device.log"
  fi
done

# 4. PyTorch with CUDA.
PY=python3
[ -x bench/.venv/bin/python ] && PY=bench/.venv/bin/python
TORCH_NOTE=""
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "bench/torch_bench.py --device cuda ($PY)"
  TORCH_ARGS=(--device cuda --data "$DATA" --json "$OUT/torch-cuda.json")
  [ "$QUICK" = 1 ] && TORCH_ARGS+=(--quick)
  "$PY" bench/torch_bench.py "${TORCH_ARGS[@]}" >"$OUT/torch-cuda.log" 2>&1 \
    || { TORCH_NOTE="torch_bench.py failed (see $OUT/torch-cuda.log)"; rm -f "$OUT/torch-cuda.json"; }
elif "$PY" -c 'import torch' 2>/dev/null; then
  TORCH_NOTE="$PY has PyTorch, but it sees no CUDA GPU"
else
  TORCH_NOTE="no PyTorch for $PY (see bench/README.md to set up bench/.venv)"
fi
[ -n "$TORCH_NOTE" ] && echo "PyTorch skipped: $TORCH_NOTE"

# 5. The table.
say "table"
python3 - "$OUT" "$LECTURE_DEVICE" "$QUICK" "$CUDA_NOTE" "$TORCH_NOTE" "$CHECKS_NOTE" "${DEVICES[@]}" <<'PY'
import json, os, sys

out, lecture_device, quick, cuda_note, torch_note, checks_note, *devices = sys.argv[1:]

def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None

benches = {d: load(f"bench-{d}.json") for d in devices}
torch = load("torch-cuda.json")
lectures = {d: load(f"lecture-{d}/lecture.json") for d in (lecture_device, "cpu")}

def rates(report):
    if not report:
        return {}
    return {m["model"]: m["train_images_per_second"] for m in report["models"]}

def fmt(x, digits=0):
    return "n/a" if x is None else f"{x:,.{digits}f}"

torch_rates = rates(torch)
bench_rates = {d: rates(b) for d, b in benches.items()}
runs = [r["model"] for r in (lectures[lecture_device] or lectures["cpu"] or [])]
if not runs:
    runs = ["fc x3", "fc-relu x3", "conv x3", "conv2 x3", "conv2 x10"]
def accuracy(device, run):
    for r in lectures[device] or []:
        if r["model"] == run:
            return r.get("test_accuracy")
    return None

head = ["run"] + [f"Rust {d} images/s" for d in devices] + [
    "PyTorch cuda images/s", f"Rust {devices[0]} / PyTorch",
    f"accuracy % ({lecture_device})", "accuracy % (cpu)"]
rows, seen = [], set()
for run in runs:
    model = run.split(" ")[0]
    first = model not in seen
    seen.add(model)
    ours = [bench_rates[d].get(model) if first else None for d in devices]
    theirs = torch_rates.get(model) if first else None
    ratio = f"{ours[0] / theirs:.2f}x" if ours[0] and theirs else ("n/a" if first else "")
    cells = [run] + [fmt(x) if first else "" for x in ours]
    cells += [fmt(theirs) if first else "", ratio]
    cells += [fmt(accuracy(lecture_device, run), 1), fmt(accuracy("cpu", run), 1)]
    rows.append(cells)

lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
lines += ["| " + " | ".join(r) + " |" for r in rows]
notes = []
for d, b in benches.items():
    if b:
        notes.append(f"Rust {d}: {b['device']}, batch {b['batch_size']}, {b['runs']} runs (median)")
if torch:
    notes.append(f"PyTorch: {torch['framework']} on {torch['device']}")
if quick == "1":
    notes.append("--quick: a smoke run, not a measurement")
if cuda_note:
    notes.append(f"CUDA not measured: {cuda_note}")
if torch_note:
    notes.append(f"PyTorch not measured: {torch_note}")
notes.append(f"Checks against the CPU (same weights, losses, accuracy): {checks_note}")
text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
print(text)
open(os.path.join(out, "gpu_check.md"), "w").write(text)
PY
SECS=$(($(date +%s) - START))
printf 'gpu_check: done in %dm%02ds; reports in %s\n' $((SECS / 60)) $((SECS % 60)) "$OUT"
