#!/bin/bash
# Every GPU check in one call on a lent GPU machine, from the repository root; figures under $OUT.
# Before it, in the same warm lease, carry onnxruntime-gpu in: ../shared/tools/device/stage-ort-gpu.sh prints the
# calls (one part each, into /tmp/ortp); this script unpacks them. It then runs the tests marked gpu, the
# throughput sections a GPU changes (writing $OUT/gpu.json, which benchmarks/results/gpu.json keeps) and, where
# albumentations can be imported, a smoke bench on the GPU. Under 10 minutes (the parts have timeouts).
set -u
export PYTHONUNBUFFERED=1
export PYTHONPATH="/tmp/ortgpu:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # onnxruntime-gpu first, augmentor from this checkout
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if [ -d /tmp/ortp ] && [ ! -d /tmp/ortgpu ]; then
    cat /tmp/ortp/part.* > /tmp/ort.tar.zst \
        && python3 -m pip install -q --no-deps --target /tmp/zs .gpu-ort/zstandard-*.whl \
        && PYTHONPATH=/tmp/zs python3 .gpu-ort/unpack.py /tmp/ort.tar.zst /tmp/ortgpu \
        && rm -rf /tmp/ortp /tmp/ort.tar.zst
fi
{
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, '| onnxruntime', o.__version__, o.get_available_providers())"
} 2>&1 | tee "$OUT/env.txt"
echo "== tests marked gpu"
timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/gpu-tests.log"
echo "== throughput: training (eager and compiled), sampling (fp32, fp16, provider options), the device mix"
(cd benchmarks && timeout 400 python3 throughput.py --device cuda --steps 50 --sections train sample devicemix \
    --out "$OUT/throughput-gpu.json" --gpu-json "$OUT/gpu.json") 2>&1 | grep -v "^{" | tee "$OUT/throughput.log"
if python3 -c "import albumentations" 2>/dev/null; then
    echo "== bench --preset smoke --device cuda"
    timeout 60 python3 -m augmentor bench --preset smoke --device cuda --out /tmp/bench-smoke-cuda 2>&1 \
        | tr '\r' '\n' | tail -3 | tee "$OUT/bench-smoke.log"
else
    echo "== bench smoke skipped: no albumentations here (carry its wheels to run it)" | tee "$OUT/bench-smoke.log"
fi
cat "$OUT/gpu.json" 2>/dev/null
