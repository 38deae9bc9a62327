#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: record what comet-agent reads next to what nvidia-smi says,
# to compare names, units and values by hand. Nothing is sent anywhere.
#   bench/gpu_check.sh [OUT_DIR]        (COMET_AGENT=/path/to/comet-agent to pick the binary)
set -uo pipefail
out=$(realpath -m "${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}")
agent=${COMET_AGENT:-comet-agent}
mkdir -p "$out"
cd "$(dirname "$0")/.." || exit 1  # the repository root: tests/ and agent/ are found from here

run() {  # run NAME CMD...: stdout to NAME, stderr to NAME.stderr, never stop the script
    local name=$1; shift
    "$@" >"$out/$name" 2>"$out/$name.stderr" || echo "$name: exit $? (see $out/$name.stderr)" >&2
}

run nvidia-smi-q.txt nvidia-smi -q
run nvidia-smi-L.txt nvidia-smi -L
run nvidia-smi.csv nvidia-smi --format=csv,nounits --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,utilization.memory,power.draw,power.limit,temperature.gpu,clocks.sm,clocks.mem,fan.speed,pcie.link.gen.current,mig.mode.current
run sysinfo.json "$agent" sysinfo --json
run sample.json "$agent" sample --json
# The sampler itself, without the CLI: two samples a second apart (the second has no total_memory).
run gpu-sampler.json python3 - <<'PY'
import dataclasses, json, sys, threading
from agent.collect.gpu import gpu_sampler
from agent.config import Settings
reasons = []
sampler = gpu_sampler(Settings(), on_unavailable=reasons.append)
if sampler is None:
    sys.exit(f"no GPU sampler: {reasons}")
try:
    out = {"notes": sampler.notes, "facts": dataclasses.asdict(sampler.facts()), "samples": []}
    for _ in range(2):
        s = sampler.collect()
        out["samples"].append({"timestamp_ms": s.timestamp_ms, "metrics": dict(s.metrics),
                               "typed": s.typed, "unsupported": sorted(s.unsupported),
                               "events": [dataclasses.asdict(e) for e in s.events]})
        threading.Event().wait(1)
finally:
    sampler.close()
json.dump(out, sys.stdout, indent=2, default=str)
PY
run pytest-gpu.txt python3 -m pytest -q -m gpu -rs tests/test_gpu.py
echo "wrote $out/"
