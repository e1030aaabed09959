#!/bin/bash
# The CLI's GPU paths end to end on a CUDA machine: fit, resume, sample, score, bench (smoke), fit --unlabeled,
# fit --init and torchrun (one process). The Sampler's CUDA provider: gpu_sampler.sh.
# From the repository root, with augmentor installed; on a bare machine without a registry, put the wheels of
# albumentations and its dependencies in .whl/ and this installs them and augmentor into /tmp/site first.
set -eu
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . >/dev/null 2>&1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
A="python3 -m augmentor"
t0=$SECONDS
$A fit --data sklearn:digits --steps 300 --width 32 --device cuda --out /tmp/r1 2>&1 | grep -v -e fetch_version -e check_version | tr '\r' '\n' | grep -v "^fit:" | tail -4
$A fit --out /tmp/r1 --resume --steps 400 --device cuda 2>&1 | tr '\r' '\n' | grep -v "^fit:" | grep -v version | tail -3
python3 -c "import json; print([json.loads(l).get('step') for l in open('/tmp/r1/log.jsonl')][-1])"
$A sample /tmp/r1 --n 50 --per-class --out /tmp/s1 --device cpu 2>&1 | grep -v version | tail -2; find /tmp/s1 -name '*.png' | wc -l
$A sample /tmp/r1 --n 10 --out /tmp/s2 --device cuda 2>&1 | grep -v version | tail -1 || true
$A fit --data sklearn:digits --classes 0 --steps 150 --width 32 --device cuda --out /tmp/r2 2>&1 | tr '\r' '\n' | grep -v "^fit:" | grep -v version | tail -2
$A score --model /tmp/r2 --data sklearn:digits --normal-classes 0 --out /tmp/sc.csv 2>&1 | grep -v version | tail -3
timeout 120 $A bench --preset smoke --device cuda --out /tmp/b1 2>&1 | tr '\r' '\n' | grep -v -e "^fit:" -e version -e "img/s" | tail -3
$A fit --data sklearn:digits --per-class 5 --unlabeled sklearn:digits --pseudo-steps 300 --labeller-steps 300 --steps 200 --width 32 --device cuda --out /tmp/r3 2>&1 | tr '\r' '\n' | grep -v "^fit:" | grep -v version | tail -3
$A fit --data sklearn:digits --classes 1,2,3 --init /tmp/r1 --steps 100 --device cuda --out /tmp/r4 2>&1 | tr '\r' '\n' | grep -v "^fit:" | grep -v version | tail -2
$A info /tmp/r4 2>&1 | grep -i -e init -e start | head -3
timeout 120 torchrun --standalone --nproc-per-node 1 -m augmentor fit --data sklearn:digits --steps 100 --width 32 --device cuda --out /tmp/r5 2>&1 | tr '\r' '\n' | grep -v -e "^fit:" -e version | tail -2
echo "seconds: $((SECONDS - t0))"
