"""Runs made of runs: sweeps (:mod:`tokendyn.runs.sweep`) and experiments
(:mod:`tokendyn.runs.experiment`: a grid of presets x precisions x controls x seeds, then
``compare``), which orchestrate the trainer and the surfaces. Nothing imports this."""
