#!/usr/bin/env bash
# Full-MNIST accuracy of the shipped configs, including the offline Kaggle workflow.
#   bash bench/mnist_accuracy.sh [SEED ...]     (default seed: 42; ~25 min per seed on 2 cores)
# Runs go to outputs/bench-accuracy/; prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=outputs/bench-accuracy
mkdir -p "$out"
[ -f data/kaggle/train.csv ] || cnnlab data mnist-to-kaggle data/mnist.npz data/kaggle
newest() { ls -td "$out"/"$1"-* | head -n 1; }
for seed in "${@:-42}"; do
  cnnlab train configs/mnist_kaggle_deep_cnn.yaml --set seed="$seed" --set output_dir="$out" \
    --set train.verbose=2
  run=$(newest mnist_kaggle_deep_cnn)
  cnnlab predict-csv "$run" data/kaggle/test.csv -o "$run/submission-check.csv"
  echo "seed $seed kaggle deep_cnn: $(cnnlab data score "$run/submission-check.csv" data/kaggle/test_labels.csv)  [$run]"
  for config in mnist_small_cnn mnist_mlp; do
    cnnlab train "configs/$config.yaml" --set seed="$seed" --set output_dir="$out" --set train.verbose=2
    run=$(newest "$config")
    python -c "import json,sys; m=json.load(open(sys.argv[1])); print(f'seed $seed $config: test accuracy {m[\"test\"][\"accuracy\"]:.4f}, {m[\"train_seconds\"]:.0f} s fit  [{sys.argv[2]}]')" "$run/metrics.json" "$run"
  done
done
