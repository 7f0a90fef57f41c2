"""bonexray: bone radiograph region and fracture classification as a DVC pipeline."""

__version__ = "0.1.0"
