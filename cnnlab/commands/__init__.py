"""Each command's own work, called by cnnlab.cli once its arguments are checked: `evaluate`,
`predict` (predict and predict-csv), `submission` (predict --sample-submission), `score`
(data score), `compare`, `check` (check and summary), `tune` and
`export`."""
