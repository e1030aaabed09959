#!/bin/bash
# The Sampler's CUDA provider (IOBinding) on a lent GPU: the same images as the CPU provider from the same
# noise, then its throughput (throughput.py's sample and mix sections). From the repository root (augmentor is
# imported from the checkout), with onnxruntime-gpu importable (on the lent machine:
# ../shared/tools/device/stage-ort-gpu.sh, then its unpacked folder on PYTHONPATH; pip refuses its renamed
# zstandard.whl, so unzip that wheel into a folder on PYTHONPATH instead). Writes $OUT/throughput-gpu-ort.json.
set -eu
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # throughput.py imports augmentor from the checkout
DEVICE=${DEVICE:-cuda}
python3 -c "import torch, onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
python3 -m augmentor fit --data sklearn:digits --steps 200 --width 32 --device "$DEVICE" --out /tmp/gs1 --force 2>&1 \
    | tr '\r' '\n' | grep -v -e "^fit:" -e version | tail -1
python3 - "$DEVICE" <<'PY'
import sys, torch
from augmentor import Sampler
dev = sys.argv[1]
gpu, cpu = Sampler("/tmp/gs1", device=dev), Sampler("/tmp/gs1", device="cpu")
z = torch.randn(1000, gpu.nz, generator=torch.Generator().manual_seed(0))
y = torch.arange(1000) % gpu.num_classes
a, b = gpu.generate(z.to(dev), y.to(dev)), cpu.generate(z, y)
print(f"Sampler {dev} provider vs CPU provider, 1,000 images in [-1, 1]: max |difference| {(a.cpu() - b).abs().max().item():.2e}, "
      f"output on {a.device}")
PY
python3 benchmarks/throughput.py --device "$DEVICE" --sections sample mix --out "${OUT:-/tmp}/throughput-gpu-ort.json"
