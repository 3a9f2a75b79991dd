"""Each command's own work, called by cnnlab.cli once its arguments are checked: `evaluate`,
`predict` (predict and predict-csv), `compare`, `check` (check and summary), `tune` and
`export`."""
