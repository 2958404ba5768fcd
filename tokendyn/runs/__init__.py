"""Runs made of runs: sweeps that orchestrate the trainer and the surfaces. Nothing imports this."""
