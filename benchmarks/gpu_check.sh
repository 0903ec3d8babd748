#!/usr/bin/env bash
# The GPU check, about 6 minutes on one modern GPU (run from the repository root; results under $OUT):
#   1. the tests marked gpu (CUDA training in every precision, compile without recompiling, NCCL with 2 GPUs);
#   2. paper-128 training speed with the VGG-19 perceptual loss (random weights: timing only) in
#      fp32 / bf16 × eager / compile, against the matmul and 3×3-convolution peaks of each dtype;
#   3. a 300-step paper-128 training on built-in synthetic videos: losses finite and falling, error below the mean pose;
#   4. with 2 or more GPUs: a 2-process NCCL training run through torchrun and the CLI.
# Exits non-zero when any part fails.
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
status=0
step() { echo; echo "== $1"; }

step "tests marked gpu"
python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" || status=1

step "speed: paper-128 + VGG-19, fp32/bf16 × eager/compile"
python benchmarks/speed.py --presets paper-128 --vgg random --modes eager compile --precisions fp32 bf16 \
  --steps "${SPEED_STEPS:-20}" --pipeline-steps 0 --json "$OUT/speed.json" 2>&1 | tee "$OUT/speed.txt" || status=1

step "300-step paper-128 training on built-in videos"
python benchmarks/train_check.py --preset paper-128 --size 128 --steps "${TRAIN_STEPS:-300}" --out "$OUT/train_check" 2>&1 \
  | tee "$OUT/train_check.txt" || status=1

gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  step "2 processes over NCCL (torchrun)"
  python -m torch.distributed.run --standalone --nproc_per_node 2 -m keypointgan.cli train --data "$OUT/train_check/data" \
    --out "$OUT/ddp" --preset paper-128 --steps 50 --pretrain-steps 100 --quiet --no-report 2>&1 | tail -5 | tee "$OUT/ddp.txt" || status=1
  python -c "import json,sys; r=[json.loads(l) for l in open('$OUT/ddp/log.jsonl')]; s=[x for x in r if x.get('event')=='start'][0]; sys.exit(0 if s['world_size']==2 else 1)" || status=1
else
  echo; echo "== 2 processes over NCCL: skipped ($gpus GPU)"
fi
echo; echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); results in $OUT"
exit $status
