"""The embedded synthetic sample: simulated radiographs in two clinics' layouts.

`generate(out_dir, seed, scale)` writes it; `radiograph.render(...)` makes one image.
Submodules: anatomy (five regions from analytic solids), parts and geometry (projected
thicknesses), fracture, render (projection), physics (detector and processing), plan (what
to render), layout (where files go), mess (planted defects), encode (deterministic bytes),
sample (writes it all).
"""

from bonexray.synth.sample import SynthError, generate

__all__ = ["SynthError", "generate"]
