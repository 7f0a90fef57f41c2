"""Grad-CAM overlays and their localisation checks."""
