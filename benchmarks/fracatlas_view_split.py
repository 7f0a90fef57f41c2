"""Split FracAtlas by one view flag into two FracAtlas-shaped folders of per-image links.

    python benchmarks/fracatlas_view_split.py FRACATLAS lateral KEPT HELD_OUT

KEPT gets the images whose view flag is 0, HELD_OUT those whose flag is 1 (an image flagged
frontal and lateral goes to HELD_OUT for "lateral"); each gets its own filtered dataset.csv
(the same columns) and images/{Fractured,Non_fractured}/ of symbolic links into FRACATLAS,
so nothing is copied. fracatlas_pipeline.sh --hold-out-view trains on KEPT and validates on
HELD_OUT: a stand-in for a new site, since no second labelled set is within reach.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from bonexray.data.sources.fracatlas import VIEW_FLAGS


def write_part(source: Path, root: Path, columns: list[str], rows: list[dict]) -> str:
    """dataset.csv and the image links of ``rows`` under ``root``; a one-line summary."""
    root.mkdir(parents=True)
    with open(root / "dataset.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        folder = "Fractured" if row["fractured"] == "1" else "Non_fractured"
        link = root / "images" / folder / row["image_id"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source / "images" / folder / row["image_id"])
    fractured = sum(row["fractured"] == "1" for row in rows)
    return f"{root}: {len(rows)} images ({fractured} fractured)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fracatlas", type=Path, help="FracAtlas folder (dataset.csv, images/)")
    parser.add_argument("view", choices=VIEW_FLAGS, help="the view flag to hold out")
    parser.add_argument("kept", type=Path, help="new folder: images without the view")
    parser.add_argument("held_out", type=Path, help="new folder: images with the view")
    args = parser.parse_args()
    source = args.fracatlas.resolve()
    with open(source / "dataset.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    if args.view not in columns:
        parser.error(f"{source / 'dataset.csv'} has no column {args.view!r}")
    kept = [row for row in rows if row[args.view] != "1"]
    held = [row for row in rows if row[args.view] == "1"]
    print(write_part(source, args.kept, columns, kept))
    print(write_part(source, args.held_out, columns, held))


if __name__ == "__main__":
    main()
