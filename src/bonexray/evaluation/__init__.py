"""Scores, calibration and serving records, the same code for every model."""
