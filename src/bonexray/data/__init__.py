"""From raw folders to labelled, split working images: sources, census, repair, split, relabel."""
