#!/usr/bin/env bash
# One diagnostic run of the data study: the base recipe (runs/data/base.json) on one derived data folder.
#   runs/data/run.sh NAME DATA_FOLDER   -> runs/data/NAME (log in runs/data/NAME.out)
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; data=$2
OMP_NUM_THREADS=1 hushnet train --config runs/data/base.json --data "$data" -o "runs/data/$name" -q \
  > "runs/data/$name.out" 2>&1
