"""Prediction on new images and model export."""
