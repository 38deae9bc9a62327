#!/usr/bin/env bash
# One-shot real-GPU check: what comet-agent reads on GPU 0 against nvidia-smi, idle and under a
# short CUDA load, one PASS/FAIL/WARN row each; exit 1 on any FAIL, 2 when it cannot run.
# The load uses libcuda.so.1 alone (driver API and a PTX kernel through ctypes: no torch, no cupy).
# The whole script is killed at 5 minutes. Nothing is sent anywhere.
#   bench/gpu_check.sh [REPO]      (run from anywhere; REPO defaults to this script's repository)
# Needs: nvidia-smi, python3 >= 3.11 that imports pynvml (nvidia-ml-py) and the agent's own
# dependencies (pip install -e . in REPO, or PYTHONPATH naming where they are).
set -uo pipefail
command -v nvidia-smi >/dev/null || { echo "FAIL nvidia-smi not found: not a GPU machine"; exit 2; }
repo=$(realpath "${1:-$(dirname "$0")/..}")
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec timeout -k 10 300 python3 - <<'PY'
"""Compare the agent's GPU 0 readings with nvidia-smi; rows print as they are checked."""
import json, os, re, subprocess as sp, sys, threading, time

try:
    from agent.collect.gpu import gpu_sampler
    from agent.config import Settings
except ImportError as exc:
    sys.exit(f"FAIL cannot import the agent from {sys.path[0]!r}: {exc}")

MiB = 2**20
failed = 0


def row(name, ok, agent, smi, note=""):
    """Print one row now: PASS, FAIL, or WARN where ok is None (could not be compared)."""
    global failed
    verdict = "WARN" if ok is None else "PASS" if ok else "FAIL"
    failed += verdict == "FAIL"
    print(f"{verdict}  {name:34} agent={str(agent)[:40]:40} smi={str(smi)[:40]:40} {note}", flush=True)


def near(name, agent, smi, tol, note=""):
    """PASS when both agree within tol; both unavailable passes; one side unavailable warns."""
    if agent is None or smi is None:
        row(name, (agent is None and smi is None) or None, agent, smi, note or "n/a")
    else:
        row(name, abs(agent - smi) <= tol, round(agent, 1), round(smi, 1), note)


def smi(*args):
    return sp.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30).stdout


def value(text):
    text = text.strip()
    if text.startswith("[") or text in ("N/A", ""):
        return None
    if text.startswith("0x"):
        return int(text, 16)
    try:
        return float(text)
    except ValueError:
        return text


WANT = [
    "uuid", "name", "driver_version", "memory.total", "memory.used", "memory.reserved",
    "memory.free", "utilization.gpu", "power.draw", "enforced.power.limit", "temperature.gpu",
    "clocks.sm", "clocks.mem", "fan.speed", "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total", "mig.mode.current",
]
# Only the fields this driver's nvidia-smi knows (memory.reserved came with R510).
FIELDS = [f for f in WANT if sp.run(["nvidia-smi", "-i", "0", f"--query-gpu={f}",
          "--format=csv"], capture_output=True).returncode == 0]


def query():
    got = smi("-i", "0", f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits")
    q = dict(zip(FIELDS, (value(v) for v in got.split(", "))))
    if isinstance(q.get("memory.used"), float):
        q["used+reserved"] = q["memory.used"] + (q.get("memory.reserved") or 0)
    apps = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    q["apps"] = {int(p): float(m) for p, m in re.findall(r"(\d+),\s*(\d+)", apps)}
    tx = re.search(r"Tx Throughput\s*:\s*(\d+) KB/s", smi("-q", "-i", "0", "-d", "PCIE"))
    q["tx_kbs"] = tx and int(tx.group(1))
    return q


watched: set[int] = set()
why: list[str] = []
sampler = gpu_sampler(Settings(), environ={}, watched_pids=lambda: set(watched), on_unavailable=why.append)
if sampler is None:
    print(f"FAIL the agent has no GPU sampler: {why}")
    sys.exit(1)


def agent():
    """GPU 0's metrics (names after sys.gpu.0.) and the milliseconds one sample took."""
    started = time.monotonic()
    try:
        sample = sampler.collect()
    except Exception as exc:  # a check script: say it and go on
        row("agent sample", False, repr(exc)[:80], "")
        return {}, 0.0
    for event in sample.events:
        print(f"      event {event.kind}: {event.message}")
    ms = (time.monotonic() - started) * 1e3
    return {k[len("sys.gpu.0."):]: v for k, v in sample.metrics.items() if k.startswith("sys.gpu.0.")}, ms


CHECKS = (  # agent metric, divide by, nvidia-smi field, tolerance, note
    ("used_memory", MiB, "used+reserved", 64, "NVML v1 used = smi used + reserved"),
    ("free_memory", MiB, "memory.free", 64, ""),
    ("gpu_utilization", 1, "utilization.gpu", 20, "racy: two reads"),
    ("power_usage", 1000, "power.draw", 60, "mW vs W"),
    ("power_limit", 1000, "enforced.power.limit", 1, "mW vs W"),
    ("temperature", 1, "temperature.gpu", 3, "C"),
    ("clock_sm", 1, "clocks.sm", 200, "MHz"),
    ("clock_memory", 1, "clocks.mem", 50, "MHz"),
    ("fan_speed", 1, "fan.speed", 5, "%"),
    ("ecc_corrected", 1, "ecc.errors.corrected.volatile.total", 0, "volatile"),
    ("ecc_uncorrected", 1, "ecc.errors.uncorrected.volatile.total", 0, "volatile"),
)


def compare(tag, got, q):
    for key, scale, field, tol, note in CHECKS:
        near(f"{tag} {key}", None if got.get(key) is None else got[key] / scale, q.get(field), tol, note)
    tx = got.get("pcie_tx_bps")
    near(f"{tag} pcie_tx KB/s", None if tx is None else tx / 1024, q.get("tx_kbs"),
         max(50_000, 0.5 * (q.get("tx_kbs") or 0)), "counters vs a 20 ms window: WARN-level")


# -- static facts: the CLI, as a user runs it ---------------------------------------------------
info = json.loads(sp.run([sys.executable, "-m", "agent", "sysinfo", "--json"], capture_output=True,
                         text=True, timeout=60).stdout or "{}")
q = query()
text = json.dumps(info)
row("sysinfo names GPU 0's uuid", str(q.get("uuid")) in text, "found" if str(q.get("uuid")) in text else "missing", q.get("uuid"))
row("sysinfo names the driver", str(q.get("driver_version")) in text, "", q.get("driver_version"))
facts = sampler.facts()
st = facts.static_info[0]
row("static name", st["name"] == q.get("name"), st["name"], q.get("name"))
near("static total_memory MiB", st["total_memory"] and st["total_memory"] / MiB, q.get("memory.total"), 1)
near("static power_limit W", st["power_limit"] and st["power_limit"] / 1000, q.get("enforced.power.limit"), 1)

# -- idle ---------------------------------------------------------------------------------------
agent()
threading.Event().wait(1.0)
idle, ms = agent()  # the second sample: PCIe rates need two counter readings
compare("idle", idle, query())
row("one sample, 1 GPU", ms < 250 or None, f"{ms:.0f} ms", "", "goal: well under 250 ms")

# -- CUDA_VISIBLE_DEVICES forms -----------------------------------------------------------------
uuid = st["uuid"]
for cvd, want in (("0", [uuid]), (uuid, [uuid]), (uuid[:12], [uuid]), ("", None), ("-1", None), ("NoDevFiles", None)):
    other = gpu_sampler(Settings(), environ={"CUDA_VISIBLE_DEVICES": cvd})
    got = other and [g.device.uuid for g in other.devices]
    row(f"CUDA_VISIBLE_DEVICES={cvd!r}", got == want, got, want)
    other and other.close()

# -- under load: a ctypes CUDA program holding 4 GiB and spinning a kernel for ~40 s -------------
LOAD = r'''
import ctypes as C, sys, time
PTX = b""".version 7.0
.target sm_52
.address_size 64
.visible .entry spin(.param .u64 out, .param .u32 n) {
 .reg .pred p; .reg .f32 a; .reg .u32 i, k, t; .reg .u64 o, d;
 ld.param.u64 o, [out]; ld.param.u32 k, [n]; mov.u32 t, %tid.x; cvt.rn.f32.u32 a, t; mov.u32 i, 0;
L: fma.rn.f32 a, a, 0f3F7FFFFF, 0f3F800000; add.u32 i, i, 1; setp.lt.u32 p, i, k; @p bra L;
 cvta.to.global.u64 o, o; mul.wide.u32 d, t, 4; add.u64 o, o, d; st.global.f32 [o], a; ret; }"""
cu = C.CDLL("libcuda.so.1")
def ok(r, what):
    if r:
        print(f"load: {what} failed with CUresult {r}", flush=True); sys.exit(1)
dev, ctx, mod, fn, mem, out = C.c_int(), C.c_void_p(), C.c_void_p(), C.c_void_p(), C.c_uint64(), C.c_uint64()
ok(cu.cuInit(0), "cuInit"); ok(cu.cuDeviceGet(C.byref(dev), 0), "cuDeviceGet")
ok(cu.cuDevicePrimaryCtxRetain(C.byref(ctx), dev), "cuDevicePrimaryCtxRetain"); ok(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
ok(cu.cuMemAlloc_v2(C.byref(mem), C.c_size_t(4 << 30)), "cuMemAlloc 4 GiB")
ok(cu.cuMemAlloc_v2(C.byref(out), C.c_size_t(1 << 20)), "cuMemAlloc")
ok(cu.cuMemsetD8_v2(mem, 1, C.c_size_t(4 << 30)), "cuMemsetD8")
ok(cu.cuModuleLoadData(C.byref(mod), PTX), "cuModuleLoadData"); ok(cu.cuModuleGetFunction(C.byref(fn), mod, b"spin"), "cuModuleGetFunction")
n = C.c_uint(2_000_000); args = (C.c_void_p * 2)(C.cast(C.byref(out), C.c_void_p), C.cast(C.byref(n), C.c_void_p))
print("load: running", flush=True)
end = time.monotonic() + 40
while time.monotonic() < end:
    ok(cu.cuLaunchKernel(fn, 1024, 1, 1, 256, 1, 1, 0, None, args, None), "cuLaunchKernel")
    ok(cu.cuCtxSynchronize(), "cuCtxSynchronize")
'''
load = sp.Popen([sys.executable, "-c", LOAD], stdout=sp.PIPE, text=True)
watched.add(load.pid)
line = load.stdout.readline() if load.stdout else ""
if "running" not in line:
    row("CUDA load started", False, line.strip() or f"exit {load.wait()}", "")
else:
    threading.Event().wait(8.0)  # let utilisation, power and clocks rise
    busy, ms = agent()
    q = query()
    compare("load", busy, q)
    row("load: gpu_utilization rose", (busy.get("gpu_utilization") or 0) > (idle.get("gpu_utilization") or 0) or None,
        busy.get("gpu_utilization"), q.get("utilization.gpu"))
    smi_mib = q["apps"].get(load.pid)
    got = busy.get("process_memory")
    near("load: process_memory MiB", None if got is None else got / MiB, smi_mib, 64,
         "vs --query-compute-apps (None on both: host PIDs in a container)")
load.kill()
load.wait()
sampler.close()
print(f"{'FAIL' if failed else 'PASS'}  {failed} failed row(s)")
sys.exit(1 if failed else 0)
PY
