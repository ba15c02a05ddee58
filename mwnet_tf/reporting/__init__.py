"""Reporting: results tables from kept runs, benchmark tables, the paper's tables as data, and
the figures of a run's weighting."""
