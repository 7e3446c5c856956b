"""Dataset validation: manifest completeness, readability, class balance, size / mode
consistency, exact and near duplicates, same-field twins.

:func:`validate` reads every file (in a thread pool; a second pass makes the greyscale
thumbnails of :mod:`hemasuite.same_field`) and returns a :class:`ValidationReport`;
:func:`duplicate_group_ids` and :func:`level_groups` turn its groups into the group ids a
leak-free split needs. Paths in reports are absolute, except in :class:`ManifestCheck`,
whose lists are relative to the data root like the manifest.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image
from scipy import sparse
from scipy.fft import dctn
from scipy.sparse.csgraph import connected_components

from . import config, content_cache
from . import same_field as fields
from .errors import ParameterError
from .imageio import DECODE_ERRORS, describe_error, is_image_file, to_rgb, too_many_pixels

PROBLEM_COLUMNS = ["kind", "path", "detail"]
# pHash bits: on Taleqani ALL, pairs within 10 bits are the same smear field re-shot or shifted, pairs at
# 12+ bits mostly distinct fields (distances are even: every hash has 32 bits set).
NEAR_THRESHOLD = 10
# A pHash hit is a near duplicate only if the fine texture agrees once the two are registered
# (same_field.register_pairs's ``detail``): 0.99+ for re-encoded or brightened copies, at most 0.64 for
# different centred cells, which share a layout (and so a pHash) but not their texture.
NEAR_CONFIRM = 0.8
SPLIT_LEVELS = {"image": "every image on its own (random image split)",
                "duplicate": "exact and confirmed near duplicates share a group",
                "field": "exact and near duplicates and same-field twins share a group",
                "case": "duplicates, same-field twins and the dataset's case / subject ids share a group"}


def _map(function, items) -> list:
    """``function`` over ``items`` in a thread pool (file reads, hashlib and PIL release the GIL)."""
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(function, items))


def _problems(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def _components(n: int, pairs) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes linked by index ``pairs`` (union-find)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def sha256_file(path) -> str | None:
    """SHA-256 hex digest of one file; None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def file_hashes(frame: pd.DataFrame) -> pd.Series:
    """SHA-256 of every file in ``frame['path']``, indexed like ``frame`` (None if unreadable)."""
    return pd.Series(_map(sha256_file, frame["path"]), index=frame.index, name="sha256", dtype=object)


# ----------------------------------------------------------------------------- manifest

@dataclass
class ManifestCheck:
    """Dataset files against a ``MANIFEST.sha256``; lists hold paths relative to ``data_root``."""

    data_root: Path
    checked: int
    missing: list[str]
    mismatched: list[str]
    unlisted: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unlisted)

    def problems(self) -> pd.DataFrame:
        """One row per discrepancy, with absolute paths."""
        kinds = (("manifest_missing", self.missing, "listed in the manifest but not in the dataset"),
                 ("hash_mismatch", self.mismatched, "SHA-256 differs from the manifest"),
                 ("not_in_manifest", self.unlisted, "in the dataset but not listed in the manifest"))
        return _problems([{"kind": kind, "path": str(self.data_root / rel), "detail": detail}
                          for kind, paths, detail in kinds for rel in paths])

    def summary(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "missing": len(self.missing),
                "mismatched": len(self.mismatched), "not_in_manifest": len(self.unlisted)}


def read_manifest(manifest_path) -> dict[str, str]:
    """``{relative path: sha256}`` from ``sha256sum``-style lines (``./`` and ``*`` prefixes allowed)."""
    entries = {}
    for line in Path(manifest_path).read_text().splitlines():
        if line.strip():
            digest, name = line.strip().split(maxsplit=1)
            entries[PurePosixPath(name.lstrip("*")).as_posix()] = digest.lower()
    return entries


def check_manifest(root, manifest_path, frame: pd.DataFrame, hashes: pd.Series | None = None) -> ManifestCheck:
    """Compare the files of ``frame`` with the manifest entries under ``root``.

    ``root`` is the dataset root or the data root itself; manifest paths are relative to
    the manifest's folder (the data root). ``hashes`` (from :func:`file_hashes`) avoids a
    second read of every file.
    """
    data_root = Path(manifest_path).resolve().parent
    root = Path(root).resolve()
    scope = root.relative_to(data_root).as_posix() if root.is_relative_to(data_root) else "."
    prefix = "" if scope == "." else scope + "/"
    expected = {rel: digest for rel, digest in read_manifest(manifest_path).items() if rel.startswith(prefix)}
    hashes = file_hashes(frame) if hashes is None else hashes
    actual = {}
    for path, digest in zip(frame["path"], hashes):
        path = Path(path).resolve()
        actual[path.relative_to(data_root).as_posix() if path.is_relative_to(data_root) else str(path)] = digest
    return ManifestCheck(data_root, len(actual), sorted(set(expected) - set(actual)),
                         sorted(rel for rel in set(expected) & set(actual) if expected[rel] != actual[rel]),
                         sorted(set(actual) - set(expected)))


# ----------------------------------------------------------------------------- per file

def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash: the 8x8 lowest DCT frequencies of a 32x32 grayscale, each above or below their median."""
    gray = np.asarray(to_rgb(image).convert("L").resize((32, 32), Image.BOX), dtype=np.float64)
    low = dctn(gray, norm="ortho")[:8, :8].ravel()
    return int(np.packbits(low > np.median(low[1:])).view(">u8")[0])


def inspect_file(path) -> dict:
    """Read one file once: SHA-256, size, mode, bands, format and pHash, or the reason it is unreadable.

    The checks match :func:`hemasuite.imageio.read_rgb`: missing, empty, undecodable and
    truncated files (PIL raises on ``load()`` unless ``ImageFile.LOAD_TRUNCATED_IMAGES``)
    give an ``error`` instead of an exception.
    """
    record = {"path": str(path), "sha256": None, "bytes": None, "width": None, "height": None, "mode": None,
              "bands": None, "format": None, "phash": None, "error": None}
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return {**record, "error": f"cannot read file ({describe_error(error)})"}
    record.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    if not data:
        return {**record, "error": "empty file (0 bytes)"}
    try:
        with Image.open(io.BytesIO(data)) as image:
            bomb = too_many_pixels(image.width, image.height)
            if bomb:
                return {**record, "width": image.width, "height": image.height, "error": bomb}
            image.load()
            record.update(width=image.width, height=image.height, mode=image.mode, bands=len(image.getbands()),
                          format=image.format, phash=perceptual_hash(image))
    except Image.DecompressionBombError as error:
        return {**record, "error": f"decompression bomb: {describe_error(error)}"}
    except DECODE_ERRORS as error:
        return {**record, "error": f"not a decodable image ({describe_error(error)})"}
    if not (record["width"] and record["height"]):
        return {**record, "error": "image has zero width or height"}
    return record


def inspect_files(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`inspect_file` for every row of ``frame`` (thread pool), plus its label, indexed like ``frame``."""
    records = _map(inspect_file, frame["path"])
    files = pd.DataFrame(records, index=frame.index)
    files.insert(1, "label", frame["label"].to_numpy())
    for column in ("bytes", "width", "height", "bands"):
        files[column] = files[column].astype("Int64")
    # from the records, not the column: with a missing hash pandas makes it float64 and drops low bits
    files["phash"] = pd.array([r["phash"] for r in records], dtype="UInt64")
    return files


# ----------------------------------------------------------------------------- tables

def class_counts(files: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Images, unreadable images and share of the total per class (empty classes included)."""
    labels = list(classes) + sorted(set(files["label"]) - set(classes))
    images = files["label"].value_counts().reindex(labels, fill_value=0)
    unreadable = files.loc[files["error"].notna(), "label"].value_counts().reindex(labels, fill_value=0)
    total = max(int(images.sum()), 1)
    return pd.DataFrame({"label": labels, "images": images.to_numpy(), "unreadable": unreadable.to_numpy(),
                         "share": (images / total).round(4).to_numpy()})


def size_table(files: pd.DataFrame) -> pd.DataFrame:
    """Readable images per (width, height, mode, bands), most common first."""
    readable = files[files["error"].isna()]
    table = readable.groupby(["width", "height", "mode", "bands"]).size().reset_index(name="images")
    return table.sort_values("images", ascending=False, kind="stable").reset_index(drop=True)


def empty_class_folders(root) -> list[str]:
    """Sub-folders of ``root`` with no image file anywhere below them."""
    root = Path(root)
    return sorted(str(folder) for folder in root.iterdir()
                  if folder.is_dir() and not folder.name.startswith(".")
                  and not any(is_image_file(p) for p in folder.rglob("*")))


def empty_class_problems(root, counts: pd.DataFrame) -> list[dict]:
    """Problem rows for class folders under ``root`` without images and classes without rows."""
    empty = empty_class_folders(root) if root is not None and Path(root).is_dir() else []
    rows = [{"kind": "empty_class", "path": folder, "detail": "class folder holds no image files"} for folder in empty]
    for label in counts.loc[counts["images"] == 0, "label"]:
        folder = str(Path(root or ".") / label)
        if folder not in empty:
            rows.append({"kind": "empty_class", "path": folder, "detail": f"class {label!r} has no images"})
    return rows


def consistency_problems(files: pd.DataFrame) -> list[dict]:
    """Problem rows for readable files whose (width, height) or mode differs from the majority."""
    readable = files[files["error"].isna()]
    if readable.empty:
        return []
    width, height = readable.groupby(["width", "height"]).size().idxmax()
    mode = readable["mode"].value_counts().idxmax()
    rows = []
    for r in readable.itertuples():
        if (r.width, r.height) != (width, height):
            rows.append({"kind": "size_outlier", "path": r.path,
                         "detail": f"{r.width}x{r.height}, majority {width}x{height}"})
        if r.mode != mode:
            rows.append({"kind": "mode_outlier", "path": r.path,
                         "detail": f"mode {r.mode} ({r.bands} bands), majority {mode}"})
    return rows


# ----------------------------------------------------------------------------- duplicates

def exact_duplicate_groups(files: pd.DataFrame) -> list[list[str]]:
    """Readable files with identical content (SHA-256), as sorted groups of paths."""
    readable = files[files["error"].isna()]
    return sorted(sorted(group) for _, group in readable.groupby("sha256")["path"] if len(group) > 1)


def hamming_pairs(hashes: np.ndarray, threshold: int, chunk: int = 512) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of 64-bit hashes differing in at most ``threshold`` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, len(hashes), chunk):
        distance = np.bitwise_count(hashes[start:start + chunk, None] ^ hashes[None, :])
        i, j = np.nonzero(distance <= threshold)
        i = i + start
        found.append(np.column_stack([i[i < j], j[i < j]]))
    return np.concatenate(found)


def _groups(paths: np.ndarray, pairs) -> list[list[str]]:
    """Connected components (of two or more) of ``paths`` linked by index ``pairs``, as sorted path lists."""
    labels = _components(len(paths), pairs)
    return sorted(sorted(paths[labels == k]) for k in np.flatnonzero(np.bincount(labels) > 1))


def near_duplicate_pairs(files: pd.DataFrame, threshold: int = NEAR_THRESHOLD, thumbs: np.ndarray | None = None,
                         confirm: float = NEAR_CONFIRM) -> pd.DataFrame:
    """Readable, not byte-identical pairs whose pHashes differ in at most ``threshold`` bits.

    With ``thumbs`` (greyscale thumbnails of the readable rows, in order) each pair is
    registered (:func:`hemasuite.same_field.register_pairs`) and ``confirmed`` only when its
    ``detail`` correlation reaches ``confirm``; without, every hit counts as confirmed.
    """
    readable = files[files["error"].isna()]
    columns = ["path_a", "path_b", "bits", "detail", "confirmed"]
    if len(readable) < 2:
        return pd.DataFrame(columns=columns)
    hashes = readable["phash"].to_numpy(np.uint64)
    pairs = hamming_pairs(hashes, threshold)
    contents = readable["sha256"].to_numpy()
    pairs = pairs[contents[pairs[:, 0]] != contents[pairs[:, 1]]]
    paths = readable["path"].to_numpy()
    table = pd.DataFrame({"path_a": paths[pairs[:, 0]], "path_b": paths[pairs[:, 1]],
                          "bits": np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]).astype(int)})
    if thumbs is None:
        return table.assign(detail=np.nan, confirmed=True)
    detail = fields.register_pairs(thumbs, pairs)["detail"].to_numpy() if len(pairs) else np.empty(0)
    return table.assign(detail=detail, confirmed=detail >= confirm)


def near_duplicate_groups(files: pd.DataFrame, threshold: int = NEAR_THRESHOLD, thumbs: np.ndarray | None = None,
                          confirm: float = NEAR_CONFIRM) -> list[list[str]]:
    """Groups of readable files linked by confirmed pHash hits (:func:`near_duplicate_pairs`)."""
    return _pair_groups(files, near_duplicate_pairs(files, threshold, thumbs, confirm).query("confirmed"))


def _pair_groups(files: pd.DataFrame, pairs: pd.DataFrame) -> list[list[str]]:
    """Groups of the readable files of ``files`` linked by the ``path_a`` / ``path_b`` rows of ``pairs``."""
    paths = files.loc[files["error"].isna(), "path"].to_numpy()
    position = {p: i for i, p in enumerate(paths)}
    index = [(position[a], position[b]) for a, b in zip(pairs["path_a"], pairs["path_b"])]
    return _groups(paths, index)


def same_field_pairs(files: pd.DataFrame, thumbs: np.ndarray, threshold: float = fields.THRESHOLD,
                     use_cache: bool = True) -> tuple[pd.DataFrame, float]:
    """Every registered same-field candidate among readable same-class files, and the seconds it took.

    Rows: ``path_a, path_b, label, score, detail, dy, dx``; the pairs scoring at least
    ``threshold`` are the twins. The candidates are cached under ``cache_dir()/same_field``,
    keyed by the files' SHA-256 and labels.
    """
    start = time.perf_counter()
    readable = files[files["error"].isna()]
    key = fields.pair_cache_key(readable["sha256"], readable["label"], size=fields.SIZE, overlap=fields.MIN_OVERLAP,
                           screen=fields.SCREEN_THRESHOLD, factor=fields.SCREEN_FACTOR)
    cache = config.cache_dir() / "same_field" / f"{key}.csv"
    if use_cache and cache.is_file():
        found = pd.read_csv(cache)
    else:
        found = fields.find_pairs(thumbs, readable["label"].to_numpy(), threshold, keep_all=True)
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            found.to_csv(cache, index=False)
    paths, labels = readable["path"].to_numpy(), readable["label"].to_numpy()
    i, j = found["i"].to_numpy(int), found["j"].to_numpy(int)
    table = pd.DataFrame({"path_a": paths[i], "path_b": paths[j], "label": labels[i]})
    table = pd.concat([table, found[["score", "detail", "dy", "dx"]].reset_index(drop=True)], axis=1)
    return table.sort_values("score", ascending=False, ignore_index=True), time.perf_counter() - start


def _duplicate_problems(groups: list[list[str]], files: pd.DataFrame, kind: str) -> list[dict]:
    """One problem row per file of each group, naming the group's other members."""
    label = dict(zip(files["path"], files["label"]))
    rows = []
    for number, group in enumerate(groups, 1):
        scope = "across_classes" if len({label[p] for p in group}) > 1 else "within_class"
        for path in group:
            others = ", ".join(f"{label[p]}/{Path(p).name}" for p in group if p != path)
            rows.append({"kind": f"{kind}_{scope}", "path": path,
                         "detail": f"group {number} ({len(group)} files) with {others}"})
    return rows


def conflicting_label_groups(report: "ValidationReport") -> list[list[str]]:
    """Exact and confirmed near-duplicate groups whose files carry more than one label (the same image in two
    classes): their label is unknown, so they are left out of training and testing."""
    label = dict(zip(report.files["path"], report.files["label"]))
    return [group for group in report.duplicate_groups + report.near_duplicate_groups
            if len({label[p] for p in group}) > 1]


def _scope_counts(groups: list[list[str]], files: pd.DataFrame) -> dict:
    label = dict(zip(files["path"], files["label"]))
    across = sum(len({label[p] for p in group}) > 1 for group in groups)
    return {"groups": len(groups), "within_class": len(groups) - across, "across_classes": across,
            "files": sum(map(len, groups))}


def _merged_ids(frame: pd.DataFrame, groups: list[list[str]], keys: pd.Series, name: str) -> pd.Series:
    """Per row, the ``keys`` value of the first row of its component (rows linked by ``groups`` or equal keys)."""
    n = len(frame)
    position = {path: i for i, path in enumerate(frame["path"])}
    pairs = [(position[group[0]], position[p]) for group in groups
             for p in group[1:] if group[0] in position and p in position]
    codes = pd.factorize(keys)[0]
    pairs += [(i, n + code) for i, code in enumerate(codes)]
    labels = _components(n + codes.max() + 1, pairs)[:n]
    first = pd.Series(np.arange(n)).groupby(labels).transform("min").to_numpy()
    return pd.Series(keys.to_numpy()[first], index=frame.index, name=name)


def duplicate_group_ids(frame: pd.DataFrame, report: ValidationReport, group_col: str | None = "group") -> pd.Series:
    """Group id per row such that exact and near duplicates, same-field twins and rows sharing ``group_col`` coincide.

    The id is the ``group_col`` value (or path) of the first row of each merged group.
    """
    keys = frame[group_col] if group_col else frame["path"]
    groups = report.duplicate_groups + report.near_duplicate_groups + report.same_field_groups
    return _merged_ids(frame, groups, keys, "duplicate_group")


def level_groups(frame: pd.DataFrame, report: ValidationReport, level: str, group_col: str = "group") -> pd.Series:
    """Group ids of a split at ``level`` (a key of :data:`SPLIT_LEVELS`), for results to name.

    ``image``: one group per image; ``duplicate``: exact and near duplicates merged;
    ``field``: also same-field twins; ``case``: also rows sharing ``group_col`` (the
    loader's case / subject id).
    """
    if level not in SPLIT_LEVELS:
        raise ParameterError(f"split level must be one of {list(SPLIT_LEVELS)}, not {level!r}")
    if level == "case" and group_col not in frame.columns:
        raise ParameterError(f"split level 'case' needs the case / subject column {group_col!r} in the frame")
    groups = {"image": [], "duplicate": report.duplicate_groups + report.near_duplicate_groups}
    groups["field"] = groups["case"] = groups["duplicate"] + report.same_field_groups
    keys = frame[group_col] if level == "case" else frame["path"]
    return _merged_ids(frame, groups[level], keys, f"{level}_group")


def default_level(dataset) -> str:
    """The strictest level a dataset supports: ``case`` with published case / subject ids, ``field`` for
    field images (smears, tissue: same-field twins are detected there), else ``duplicate``."""
    if dataset.info.get("subject_ids"):
        return "case"
    return "field" if dataset.info.get("image_kind") == "field" else "duplicate"


def same_field_calibration(dataset, report: ValidationReport, n_random: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Registered scores of the screened same-field candidates and of random same-class pairs.

    One row per pair with ``kind`` (candidate / random) and ``score``: the histogram from
    which :data:`hemasuite.same_field.THRESHOLD` was chosen.
    """
    readable = report.files[report.files["error"].isna()]
    thumbs = fields.thumbnails(readable["path"])
    random = fields.register_pairs(thumbs, fields.random_pairs(readable["label"].to_numpy(), n_random, seed))
    candidates = report.same_field_candidates[["score", "detail", "dy", "dx"]]
    return pd.concat([candidates.assign(kind="candidate"), random.drop(columns=["i", "j"]).assign(kind="random")],
                     ignore_index=True)


def grouping_table(reports) -> pd.DataFrame:
    """Per dataset: images, duplicate and same-field pairs / groups, and the images in multi-image groups."""
    rows = []
    for report in reports:
        readable = report.files[report.files["error"].isna()]
        frame = readable[["path", "label"]].assign(group=readable["path"])
        merged = duplicate_group_ids(frame, report)
        sizes = merged.map(merged.value_counts())
        rows.append({"dataset": report.dataset, "images": len(report.files),
                     "exact_groups": len(report.duplicate_groups), "near_groups": len(report.near_duplicate_groups),
                     "same_field_pairs": len(report.same_field_pairs),
                     "same_field_groups": len(report.same_field_groups),
                     "images_in_same_field_groups": sum(map(len, report.same_field_groups)),
                     "merged_groups": int((merged.value_counts() > 1).sum()),
                     "images_in_merged_groups": int((sizes > 1).sum()),
                     "share_in_merged_groups": round(float((sizes > 1).mean()) if len(sizes) else 0.0, 4)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- report

@dataclass
class ValidationReport:
    """Everything :func:`validate` found; ``problems`` has one row per file and problem.

    ``near_pairs`` lists every pHash hit and whether registration confirmed it;
    ``same_field_candidates`` every registered same-field candidate, of which those
    scoring at least ``same_field_threshold`` are ``same_field_pairs``.
    """

    dataset: str
    files: pd.DataFrame
    counts: pd.DataFrame
    sizes: pd.DataFrame
    problems: pd.DataFrame
    duplicate_groups: list[list[str]]
    near_duplicate_groups: list[list[str]]
    near_threshold: int
    manifest: ManifestCheck | None
    seconds: float
    near_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    same_field_candidates: pd.DataFrame | None = None
    same_field_threshold: float = fields.THRESHOLD
    same_field_groups: list[list[str]] = field(default_factory=list)
    same_field_seconds: float = 0.0
    cached: bool = False

    @property
    def same_field_pairs(self) -> pd.DataFrame:
        if self.same_field_candidates is None:
            return pd.DataFrame(columns=["path_a", "path_b", "label", "score", "detail", "dy", "dx"])
        return self.same_field_candidates[self.same_field_candidates["score"] >= self.same_field_threshold]

    def summary(self) -> dict:
        """JSON-able digest for results.json."""
        near_pairs = self.near_pairs
        same = None
        if self.same_field_candidates is not None:
            same = {**_scope_counts(self.same_field_groups, self.files), "pairs": int(len(self.same_field_pairs)),
                    "threshold": self.same_field_threshold, "method": "masked NCC over shifts with >= "
                    f"{fields.MIN_OVERLAP:.0%} overlap, {fields.SIZE}-px greyscale",
                    "seconds": round(self.same_field_seconds, 2)}
        return {"dataset": self.dataset, "images": int(len(self.files)),
                "per_class": {r.label: int(r.images) for r in self.counts.itertuples()},
                "unreadable": int(self.files["error"].notna().sum()),
                "sizes": [{k: (v if isinstance(v, str) else int(v)) for k, v in row.items()}
                          for row in self.sizes.to_dict(orient="records")],
                "problems": {k: int(v) for k, v in self.problems["kind"].value_counts().sort_index().items()},
                "exact_duplicates": _scope_counts(self.duplicate_groups, self.files),
                "near_duplicates": {**_scope_counts(self.near_duplicate_groups, self.files),
                                    "threshold_bits": self.near_threshold, "phash_pairs": int(len(near_pairs)),
                                    "rejected_by_registration": int((~near_pairs["confirmed"].astype(bool)).sum())
                                    if len(near_pairs) else 0},
                "same_field": same,
                "manifest": self.manifest.summary() if self.manifest else None,
                "seconds": round(self.seconds, 2), "cached": self.cached}


def validate_dataset(dataset, manifest=None, near_threshold: int = NEAR_THRESHOLD, same_field: bool | None = None,
                     same_field_threshold: float = fields.THRESHOLD) -> ValidationReport:
    """:func:`validate_now`, computed once per dataset content and settings and then read from the user cache
    (:mod:`hemasuite.content_cache`); a changed, added or removed file, or another manifest, validates again.
    The report says whether it came from the cache (``cached``)."""
    key = content_cache.fingerprint(
        dataset.frame["path"], dataset.name, str(dataset.root), tuple(dataset.frame["label"]),
        tuple(dataset.frame["group"]), tuple(dataset.classes), repr(dataset.problems), repr(dataset.info),
        content_cache.fingerprint([manifest]) if manifest is not None else None, near_threshold, same_field,
        same_field_threshold)
    report, hit = content_cache.cached("validation", key, lambda: validate_now(
        dataset, manifest, near_threshold, same_field, same_field_threshold))
    return replace(report, cached=hit)


def validate_now(dataset, manifest=None, near_threshold: int = NEAR_THRESHOLD, same_field: bool | None = None,
                 same_field_threshold: float = fields.THRESHOLD) -> ValidationReport:
    """Validate a :class:`~hemasuite.datasets.Dataset`.

    Starts from the problems the loader recorded (``dataset.problems``: files it did not
    use, for your own folders). Checks readability (decompression bombs included), empty
    classes / class folders, class counts, size and mode
    consistency (files that differ from the majority), exact duplicates (SHA-256), near
    duplicates (pHash within ``near_threshold`` bits, confirmed by registration), and
    with ``manifest`` (a ``MANIFEST.sha256`` path) completeness and integrity against it.
    ``same_field`` (default: the dataset's ``info['image_kind'] == 'field'``) also finds
    same-field twins (:mod:`hemasuite.same_field`) among same-class images.
    """
    start = time.perf_counter()
    files = inspect_files(dataset.frame)
    problems = list(dataset.problems)
    problems += [{"kind": "decompression_bomb" if r.error.startswith("decompression bomb") else "unreadable",
                  "path": r.path, "detail": r.error} for r in files[files["error"].notna()].itertuples()]

    counts = class_counts(files, dataset.classes)
    reported = {p["path"] for p in problems if p["kind"] == "empty_class"}
    problems += [p for p in empty_class_problems(dataset.root, counts) if p["path"] not in reported]
    problems += consistency_problems(files)
    sizes = size_table(files)

    readable = files[files["error"].isna()]
    thumbs = fields.thumbnails(readable["path"])
    exact = exact_duplicate_groups(files)
    near_pairs = near_duplicate_pairs(files, near_threshold, thumbs)
    near = _pair_groups(files, near_pairs[near_pairs["confirmed"].astype(bool)])
    problems += _duplicate_problems(exact, files, "exact_duplicate")
    problems += _duplicate_problems(near, files, "near_duplicate")

    candidates, twins, seconds = None, [], 0.0
    if dataset.info.get("image_kind") == "field" if same_field is None else same_field:
        candidates, seconds = same_field_pairs(files, thumbs, same_field_threshold)
        twins = _pair_groups(files, candidates[candidates["score"] >= same_field_threshold])
        problems += _duplicate_problems(twins, files, "same_field")

    check = None
    if manifest is not None:
        check = check_manifest(dataset.root, manifest, dataset.frame, files["sha256"])
        problems += check.problems().to_dict(orient="records")
    return ValidationReport(dataset.name, files, counts, sizes, _problems(problems), exact, near, near_threshold,
                            check, time.perf_counter() - start, near_pairs, candidates, same_field_threshold, twins,
                            seconds)


def data_root_manifest(dataset, data_dir=None) -> Path | None:
    """The data root's ``MANIFEST.sha256`` for a dataset of the registry, None when absent, for synthetic data and
    for own images (which have no data root)."""
    if dataset.synthetic or dataset.own:
        return None
    manifest = config.resolve_data_dir(data_dir) / "MANIFEST.sha256"
    return manifest if manifest.is_file() else None
