#!/usr/bin/env python3
"""Occupancy of an artifact's kernels on a Hopper SM, without a GPU.

Compiles each kernel of one launch list of a `pio-compile` output with NVRTC (the artifact's
own options plus `--ptxas-options=-v`), reads the registers and static shared memory ptxas
reports, and prints per launch of the first layer: the blocks an SM holds at once (registers,
shared memory, threads, the 32-block cap), the grid at a given token count and the waves that
grid takes on 132 SMs (H100 SXM and H200). A grid of 1.1 waves leaves most SMs idle for its
second part; that is the kind of thing this shows before any device time is spent.

    pio-compile qwen3-0.6b -o /tmp/art
    python3 benches/reference/kernel_occupancy.py /tmp/art --list paged --tokens 128

The NVRTC library: --nvrtc PATH, else $PIO_NVRTC_LIB, else the pip wheel `.ci/run` installs
(`.ci/nvrtc/nvidia/cu13/lib/libnvrtc.so.13`), else the system's libnvrtc.
"""

import argparse
import ctypes
import ctypes.util
import json
import math
import os
import re
import sys

# Per SM, compute capability 9.0 (CUDA C Programming Guide, "Technical Specifications per
# Compute Capability").
REGISTERS = 65536
REGISTER_UNIT = 256  # registers are allocated per warp in units of 256
MAX_THREADS = 2048
MAX_BLOCKS = 32
SHARED_BYTES = 228 * 1024
SHARED_RESERVED_PER_BLOCK = 1024
SMS = 132

LISTS = {
    "paged": ("paged", "steps"),
    "chunk": ("paged", "chunk_steps"),
    "single": ("paged", "single_steps"),
    "decode": (None, "decode"),
    "prefill": (None, "prefill"),
}


def find_nvrtc(explicit):
    here = os.path.dirname(os.path.abspath(__file__))
    wheel = os.path.join(here, "..", "..", ".ci", "nvrtc", "nvidia", "cu13", "lib", "libnvrtc.so.13")
    for path in (explicit, os.environ.get("PIO_NVRTC_LIB"), wheel, ctypes.util.find_library("nvrtc")):
        if path and (os.path.exists(path) or not os.path.dirname(path)):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    sys.exit("error: no NVRTC library found (give --nvrtc PATH or set PIO_NVRTC_LIB)")


def ptxas_usage(nvrtc, path, options, arch):
    """(registers, static shared bytes, spill store bytes) of the one kernel in `path`."""
    with open(path, "rb") as f:
        src = f.read()
    prog = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, path.encode(), 0, None, None) != 0:
        sys.exit(f"error: NVRTC could not take {path}")
    opts = [o.encode() for o in options] + [f"--gpu-architecture={arch}".encode(), b"--ptxas-options=-v"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    text = log.value.decode(errors="replace")
    if rc != 0:
        sys.exit(f"error: {path} does not compile:\n{text}")
    regs = re.search(r"Used (\d+) registers", text)
    smem = re.search(r"(\d+) bytes smem", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    if not regs:
        sys.exit(f"error: no register count in ptxas' report for {path}:\n{text}")
    return (int(regs.group(1)), int(smem.group(1)) if smem else 0,
            int(spills.group(1)) if spills else 0)


def blocks_per_sm(threads, regs, shared):
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(regs, 1) * 32 / REGISTER_UNIT) * REGISTER_UNIT
    by_regs = (REGISTERS // per_warp) // warps
    by_threads = MAX_THREADS // threads
    by_shared = SHARED_BYTES // (shared + SHARED_RESERVED_PER_BLOCK)
    limits = {"registers": by_regs, "threads": by_threads, "shared": by_shared, "cap": MAX_BLOCKS}
    n = min(limits.values())
    return n, min(limits, key=limits.get)


def grid_dim(d, tokens):
    (kind, v), = d.items()
    if kind == "fixed":
        return v
    if kind == "per_token":
        return tokens * v
    if kind == "token_tiles":
        return math.ceil(tokens / v)
    if kind == "split":
        return min(max(math.ceil(v["target"] / max(tokens, 1)), 1), max(v["max"], 1))
    if kind == "split_tokens":
        return tokens if grid_dim({"split": v}, tokens) > 1 else 0
    sys.exit(f"error: unknown grid dimension {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", help="a pio-compile output folder")
    ap.add_argument("--list", choices=sorted(LISTS), default="paged")
    ap.add_argument("--tokens", type=int, default=128, help="tokens of the step (default 128)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--nvrtc", help="path of libnvrtc")
    a = ap.parse_args()
    if a.tokens < 1:
        sys.exit("error: --tokens must be at least 1")
    path = os.path.join(a.artifact, "artifact.json")
    try:
        with open(path) as f:
            art = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"error: {path}: {e} (give a pio-compile output folder)")
    group, key = LISTS[a.list]
    steps = (art[group] if group else art)[key]
    files = {k["name"]: k["file"] for k in art["kernels"]}
    nvrtc = find_nvrtc(a.nvrtc)
    usage = {}
    print(f"{art['model']['name']}, list `{a.list}`, {a.tokens} tokens, {a.arch}, {SMS} SMs\n")
    print("| node | kernel | threads | registers | spill stores B | shared B | blocks/SM (bound) | grid | waves |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for step in steps:
        k = step.get("kernel")
        if not k or k["node"].startswith("layers.") and not k["node"].startswith("layers.0."):
            continue
        name = k["kernel"]
        if name not in usage:
            usage[name] = ptxas_usage(nvrtc, os.path.join(a.artifact, files[name]), art["nvrtc_options"], a.arch)
        regs, static_shared, spills = usage[name]
        threads = k["block"][0] * k["block"][1] * k["block"][2]
        shared = static_shared + k["shared_bytes"]
        per_sm, bound = blocks_per_sm(threads, regs, shared)
        grid = [grid_dim(d, a.tokens) for d in k["grid"]]
        blocks = grid[0] * grid[1] * grid[2]
        waves = blocks / (per_sm * SMS) if per_sm else float("inf")
        print(f"| {k['node']} | {name} | {threads} | {regs} | {spills} | {shared} | {per_sm} ({bound}) "
              f"| {grid[0]}x{grid[1]}x{grid[2]} = {blocks} | {waves:.2f} |")


if __name__ == "__main__":
    main()
