"""Do two runs split the same images the same way? Compares the split manifests of two results folders.

    python -m hemasuite.tools.compare_splits OLD_RESULTS NEW_RESULTS

Each folder is a ``reports/<profile>/results`` (an earlier one from ``git worktree add``). Manifests are matched
per notebook and resample: ``splits/<level>_seed<k>.csv`` and ``folds/<level>_k<n>.csv``, and the names of earlier
runs, ``split_manifest.csv`` / ``split_manifest_seed<k>.csv`` (split seed 0 / k, at the one level the other run
split that seed at) and ``folds_<level>.csv``. One row per pair: the images in both, how many sit on another side
(or in another fold), and the images only one run has. Exit status 1 when any image moved or a manifest has no
partner.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

PATTERNS = ((re.compile(r"splits/(?P<level>\w+?)_seed(?P<seed>\d+)\.csv"), "split"),
            (re.compile(r"folds/(?P<level>\w+?)_k\d+\.csv"), "fold"),
            (re.compile(r"split_manifest(?:_seed(?P<seed>\d+))?\.csv"), "split"),
            (re.compile(r"folds_(?P<level>\w+)\.csv"), "fold"))


def manifests(results: Path) -> dict[tuple, Path]:
    """``(notebook, column, level or None, seed or None) -> file`` for every manifest under ``results``."""
    found = {}
    for path in sorted(Path(results).glob("*/**/*.csv")):
        relative = path.relative_to(results)
        name = "/".join(relative.parts[1:])
        for pattern, column in PATTERNS:
            match = pattern.fullmatch(name)
            if match:
                parts = match.groupdict()
                seed = int(parts["seed"] or 0) if column == "split" else None
                found[(relative.parts[0], column, parts.get("level"), seed)] = path
                break
    return found


def _partner(key: tuple, others: dict[tuple, Path]) -> tuple | None:
    """The key of ``others`` that names the same resample (a key without a level matches the one level there)."""
    if key in others:
        return key
    notebook, column, level, seed = key
    same = [k for k in others if k[0] == notebook and k[1] == column and k[3] == seed
            and (level is None or k[2] is None)]
    return same[0] if len(same) == 1 else None


def compare(old: Path, new: Path) -> pd.DataFrame:
    """One row per manifest of either run: images in both, moved (other side or fold), only in old, only in new."""
    before, after = manifests(old), manifests(new)
    rows, paired = [], set()
    for key, old_file in before.items():
        partner = _partner(key, after)
        level = key[2] or (partner and partner[2]) or "(level not in the name)"
        row = {"notebook": key[0], "resample": f"{key[1]} {level}" + (f" seed {key[3]}" if key[3] is not None else ""),
               "old": old_file.relative_to(old).as_posix(),
               "new": after[partner].relative_to(new).as_posix() if partner else None}
        if partner:
            paired.add(partner)
            a = pd.read_csv(old_file, usecols=["path", key[1]])
            b = pd.read_csv(after[partner], usecols=["path", key[1]])
            both = a.merge(b, on="path", suffixes=("_old", "_new"))
            row |= {"images": len(both),
                    "moved": int((both[f"{key[1]}_old"].astype(str) != both[f"{key[1]}_new"].astype(str)).sum()),
                    "only_old": len(a) - len(both), "only_new": len(b) - len(both)}
        rows.append(row)
    rows += [{"notebook": key[0], "resample": f"{key[1]} {key[2]}" + (f" seed {key[3]}" if key[3] is not None else ""),
              "old": None,
              "new": path.relative_to(new).as_posix()} for key, path in after.items() if key not in paired]
    return pd.DataFrame(rows, columns=["notebook", "resample", "old", "new", "images", "moved", "only_old",
                                       "only_new"])


def same(table: pd.DataFrame) -> bool:
    """True when every manifest has a partner and no image moved or is missing on one side."""
    return bool(table[["old", "new"]].notna().all().all()
                and (table[["moved", "only_old", "only_new"]].fillna(1) == 0).all().all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="results folder of the earlier run")
    parser.add_argument("new", type=Path, help="results folder of the later run")
    args = parser.parse_args(argv)
    for folder in (args.old, args.new):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    table = compare(args.old, args.new)
    print(table.to_string(index=False) if len(table) else "no split manifests found")
    print("same images on each side of every split" if same(table) else "the splits differ (see above)")
    return 0 if same(table) else 1


if __name__ == "__main__":
    sys.exit(main())
