#!/usr/bin/env bash
# One training session on a lent, offline GPU machine: install the carried wheels, train until the
# wall-clock budget is spent (a checkpoint is written then), and hand the run folder back in one archive.
#
#   here, once:     python tools/gpu_bundle.py -o .gpu        # data subset + wheels, about 50 MiB
#   on the device:  bash tools/gpu_train.sh runs/gpu 8 [more `hushnet train` flags]   (carry: .gpu, runs/gpu)
#   here, after:    tar xzf <files_at>/run.tar.gz             # restores runs/gpu/, the next call resumes it
#
# A first call starts a run (from scratch by default: identity initialisation, chunkable batch
# normalisation, batch 32; --precision auto is bf16 on GPUs that have it); a later call finds runs/gpu/checkpoints and resumes.
# HUSHNET_DEVICE=cpu runs the same script on a CPU (how it is tested here).
set -euo pipefail
run=${1:?usage: gpu_train.sh RUN_FOLDER MINUTES [hushnet train flags]}
minutes=${2:?usage: gpu_train.sh RUN_FOLDER MINUTES [hushnet train flags]}
shift 2
device=${HUSHNET_DEVICE:-cuda}
out=${OUT:-/tmp/gpu_train_out}
mkdir -p "$out"

if ! python3 -c "import soundfile, soxr, pesq, pystoi, crc32c" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .gpu/wheels/pesq-*.tar.gz
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

options=(--data .gpu/data --device "$device" --time-budget-minutes "$minutes" -q)
if [ -d "$run/checkpoints" ]; then
  options+=(--resume)
else
  options+=(--norm batch --batch-size 32 --segment-seconds 3 --learning-rate 1e-3 --warmup-steps 200
            --max-steps 20000 --validate-every 500 --checkpoint-every 250 --workers 8)
fi
python3 -m hushnet.cli train -o "$run" "${options[@]}" "$@" 2>&1 | tee "$out/train.log"

# $OUT hands back at most 8 files: the run folder travels as one archive (latest checkpoint, best
# model, logs); older checkpoints stay behind.
latest=$(cat "$run/checkpoints/latest")
{ find "$run" -path "$run/checkpoints" -prune -o -type f -print; echo "$run/checkpoints/latest"; echo "$run/checkpoints/$latest"; } \
  | tar czf "$out/run.tar.gz" -T -
echo "run folder archived: $out/run.tar.gz (step ${latest#step_})"
