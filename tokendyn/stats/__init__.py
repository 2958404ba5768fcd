"""Uncertainty for what tokendyn measures: error bars inside one movie and tests between samples.

- :mod:`~tokendyn.stats.estimate`: :class:`Estimate`, a number with its standard error and interval.
- :mod:`~tokendyn.stats.blocking`: the mean of a correlated time series with the standard error of
  Flyvbjerg-Petersen blocking (the plateau found by Jonsson's automated criterion).
- :mod:`~tokendyn.stats.bootstrap`: bootstrap intervals for the mean of per-token values, and the
  band of a group's mean curve over its runs (:func:`scipy.stats.bootstrap` underneath).
- :mod:`~tokendyn.stats.twosample`: two samples compared with a test, an effect size and a verdict
  (``different``, ``same`` within a stated margin, or ``inconclusive``).

numpy and scipy only: the analyses, the report and :mod:`tokendyn.compare` all use it.
"""
from __future__ import annotations

from .blocking import BlockAverage, block_average
from .bootstrap import band, bootstrap_mean
from .estimate import Estimate, plus_minus
from .twosample import Comparison, compare_runs, compare_tokens, verdict_text

__all__ = ["Estimate", "plus_minus", "BlockAverage", "block_average", "bootstrap_mean", "band",
           "Comparison", "compare_tokens", "compare_runs", "verdict_text"]
