#!/usr/bin/env bash
# Three competition-shaped folders (bench/kaggle_shapes.py) from `cnnlab train` to a submission
# that `cnnlab data score` scores against the held-out answers, one after another:
#
#   bash bench/kaggle_competitions.sh DOGS_VS_CATS_TRAIN_DIR OUT_DIR [TIME_BUDGET]
#
# TIME_BUDGET (default 15m) is each training's train.time_budget. Each competition's
# commands and output go to OUT_DIR/<competition>.log; the scores are the last lines.
set -euo pipefail
source=$1
out=$2
budget=${3:-15m}
here=$(cd "$(dirname "$0")" && pwd)
python "$here/kaggle_shapes.py" "$source" "$out/data"
data=$out/data

run() {  # run NAME COMMAND...: the command, echoed, into NAME.log
  local name=$1
  shift
  echo "\$ $*" >>"$out/$name.log"
  "$@" >>"$out/$name.log" 2>&1
}
latest() { ls -td "$1"/*/ | head -1; }

# Dogs vs. Cats: the flat train/ folder trains as it is; test1/ numbered, 1 = dog.
run dogs_vs_cats cnnlab train "$data/dogs_vs_cats/train" --set "train.time_budget=$budget" \
  --set "output_dir=$out/runs/dogs_vs_cats"
dvc=$(latest "$out/runs/dogs_vs_cats")
run dogs_vs_cats cnnlab predict "$dvc" "$data/dogs_vs_cats/test1" \
  --sample-submission "$data/dogs_vs_cats/sampleSubmission.csv" --label-map cat=0,dog=1 \
  -o "$out/dogs_vs_cats.csv"
run dogs_vs_cats cnnlab data score "$out/dogs_vs_cats.csv" "$data/dogs_vs_cats/answers.csv"
# Its Redux: the same run, the probability of dog, clipped.
run dogs_vs_cats cnnlab predict "$dvc" "$data/redux/test1" \
  --sample-submission "$data/redux/sample_submission.csv" --label-map cat=0,dog=1 --clip \
  -o "$out/redux.csv"
run dogs_vs_cats cnnlab data score "$out/redux.csv" "$data/redux/answers.csv"

# A flat folder and train.csv (id,has_dog), as Aerial Cactus gives them.
cat >"$out/label_csv.yaml" <<EOF
data: {loader: image_csv, images: $data/label_csv/train, labels: $data/label_csv/train.csv,
       label_column: has_dog, image_size: [128, 128]}
model: {builder: airbench, filters: [32, 64, 128, 256], tta: horizontal_flip,
        augmentation: {flip: horizontal, rotation: 0.05, zoom: 0.1, translation: 0.1}}
train: {epochs: 60, time_budget: $budget, batch_size: 32, optimizer: adam, learning_rate: 1e-3,
        weight_decay: 0.3, lr_schedule: cosine, label_smoothing: 0.1, monitor: val_accuracy}
output_dir: $out/runs/label_csv
EOF
run label_csv cnnlab train "$out/label_csv.yaml"
run label_csv cnnlab predict "$(latest "$out/runs/label_csv")" "$data/label_csv/test" \
  --sample-submission "$data/label_csv/sample_submission.csv" -o "$out/label_csv.csv"
run label_csv cnnlab data score "$out/label_csv.csv" "$data/label_csv/answers.csv"

# Tags (image_name,tags), as Planet gives them: several labels per image.
sed -e "s|label_csv/train, labels: $data/label_csv/train.csv|tags/train-jpg, labels: $data/tags/train_v2.csv|" \
  -e "s|label_column: has_dog, image_size: \[128, 128\]|tags_column: tags, image_size: [128, 256], resize_mode: pad|" \
  -e "s|runs/label_csv|runs/tags|" -e "s|monitor: val_accuracy|monitor: val_loss|" \
  "$out/label_csv.yaml" >"$out/tags.yaml"
run tags cnnlab train "$out/tags.yaml"
run tags cnnlab predict "$(latest "$out/runs/tags")" "$data/tags/test-jpg" \
  --sample-submission "$data/tags/sample_submission.csv" -o "$out/tags.csv"
run tags cnnlab data score "$out/tags.csv" "$data/tags/answers.csv"
tail -n 3 "$out"/*.log
