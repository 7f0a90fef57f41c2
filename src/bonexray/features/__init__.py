"""Wavelet features of the working images: band channels and vectors."""
