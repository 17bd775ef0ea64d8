#!/bin/bash
# The development-set sweep of benchmarks/results/candidates.md, set by set (the fair set for every candidate first,
# then DNSMOS, then the rest); rows already in the record are skipped, so it resumes where it stopped.
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
PI=runs/hushnet-pi/checkpoints/step_0000260
E=benchmarks/work/ensembles
A23="authors-dfl@-23=authors-dfl,level_db=-23"; H=hushnet-dfl; P="hushnet-pi step 260=$PI"
W25="wise 25 %=wise:authors-dfl:$PI:0.25"; W50="wise 50 %=wise:authors-dfl:$PI:0.5"; W75="wise 75 %=wise:authors-dfl:$PI:0.75"
E75="ensemble 0.75 authors-dfl + 0.25 hushnet-dfl=$E/adfl75-hdfl25"; E50="ensemble 0.5 authors-dfl + 0.5 hushnet-dfl=$E/adfl50-hdfl50"
EP="ensemble 0.5 authors-dfl + 0.5 hushnet-pi step 260=$E/adfl50-pi50"
ensemble() { [ -f "$E/$1/config.json" ] || nice -n 15 python -m hushnet.cli ensemble "${@:2}" -o "$E/$1" || exit 1; }
ensemble adfl75-hdfl25 authors-dfl hushnet-dfl --weights 0.75 0.25
ensemble adfl50-hdfl50 authors-dfl hushnet-dfl --weights 0.5 0.5
ensemble adfl50-pi50 authors-dfl "$PI" --weights 0.5 0.5
run() { local set=$1 dry=$2; shift 2; for c in "$@"; do nice -n 15 python benchmarks/candidates.py --lean --missing-only --candidate "$c" --dry $dry --sets $set || exit 1; done; }
run valentini_test_dev "0 0.05 0.1" authors-dfl "$A23" "$E75" "$H" "$W25" "$E50" "$W50" "$P" "$EP" "$W75"
run real_noisy_dev "0 0.05" "$H" "$A23" "$E75" "$E50" "$W25" "$W50" "$EP" "$P" "$W75"
run valentini_dev "0 0.05 0.1" "$A23" "$H" "$E75" "$E50" "$W25" "$W50" "$P" "$EP" "$W75"
run synthetic "0 0.05" authors-dfl "$H" "$E75" "$E50" "$W25" "$P" "$W50" "$EP" "$W75" "$A23"
nice -n 15 python benchmarks/candidates.py --lean --missing-only --peers noisy rnnoise deepfilternet3 --sets valentini_test_dev
echo SWEEP DONE
