"""The declared type and range of every notebook parameter, checked before any work.

:data:`SCHEMA` maps a parameter name to a :class:`Rule`; :func:`check` applies it to a
notebook's parameters (the runner before it starts any notebook, :func:`hemasuite.session.start`
when a notebook runs by itself), so that ``epochs=0``, ``image_size=abc``, ``seeds=[]`` or
``datasets=synthetic`` (a string, not a list) fail at once with a message naming the
parameter and the values it allows. A parameter without an entry must keep the type of its
default in the notebook's ``parameters`` cell.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ParameterError


@dataclass(frozen=True)
class Rule:
    """One parameter's allowed values: ``test(value)`` is None when allowed, else what is wrong; ``allowed``
    describes the allowed values for the message."""

    allowed: str
    test: Callable[[Any], str | None]

    def check(self, name: str, value) -> None:
        problem = self.test(value)
        if problem is not None:
            raise ParameterError(f"parameter {name}={value!r}: {problem}; allowed: {self.allowed}")


def _number(value, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    left = "" if low is None else (f"> {low}" if low_open else f">= {low}")
    right = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
    return " and ".join(part for part in (left, right) if part)


def number(low=None, high=None, integer: bool = False, low_open: bool = False, high_open: bool = False) -> Rule:
    """An integer (``integer``) or a finite number within the bounds."""
    kind = "an integer" if integer else "a number"
    bounds = _bounds(low, high, low_open, high_open)
    allowed = f"{kind} {bounds}".strip()

    def test(value):
        if not _number(value, integer):
            return f"not {kind}"
        if low is not None and (value <= low if low_open else value < low):
            return "too small"
        if high is not None and (value >= high if high_open else value > high):
            return "too large"
        return None

    return Rule(allowed, test)


def integer(low=None, high=None) -> Rule:
    return number(low, high, integer=True)


def fraction(open_low: bool = True, open_high: bool = True) -> Rule:
    """A number between 0 and 1."""
    return number(0, 1, low_open=open_low, high_open=open_high)


def boolean() -> Rule:
    return Rule("true or false", lambda v: None if isinstance(v, bool) else "not true or false")


def choice(*values) -> Rule:
    return Rule(f"one of {list(values)}", lambda v: None if v in values else "not a known value")


def text() -> Rule:
    return Rule("a string", lambda v: None if isinstance(v, str) and v else "not a non-empty string")


def optional(rule: Rule) -> Rule:
    """``rule`` or None (null)."""
    return Rule(f"null or {rule.allowed}", lambda v: None if v is None else rule.test(v))


def either(*rules: Rule) -> Rule:
    """Any one of ``rules``."""
    def test(value):
        problems = [rule.test(value) for rule in rules]
        return None if None in problems else problems[0]

    return Rule(" or ".join(rule.allowed for rule in rules), test)


def mapping() -> Rule:
    return Rule("a mapping {key: value}", lambda v: None if isinstance(v, dict) else "not a mapping")


def list_of(item: Rule, min_items: int = 1, max_items: int | None = None, unique: bool = False) -> Rule:
    """A list (never a bare string) of ``min_items`` to ``max_items`` values that each satisfy ``item``; with
    ``unique``, no value twice."""
    size = f"at least {min_items}" if max_items is None else f"{min_items} to {max_items}"
    allowed = f"a list of {size}{' different' if unique else ''} item(s), each {item.allowed}, e.g. [a, b]"

    def test(value):
        if isinstance(value, str):
            return "a string, not a list (write [value] for one item)"
        if not isinstance(value, (list, tuple)):
            return "not a list"
        if len(value) < min_items or (max_items is not None and len(value) > max_items):
            return f"{len(value)} item(s)"
        for index, entry in enumerate(value):
            problem = item.test(entry)
            if problem:
                return f"item {index} ({entry!r}): {problem}"
        repeated = sorted({repr(entry) for entry in value if list(value).count(entry) > 1})
        if unique and repeated:
            return f"{', '.join(repeated)} given more than once (the same resample or seed twice would be pooled twice)"
        return None

    return Rule(allowed, test)


def fractions() -> Rule:
    """Split fractions: 2 or 3 numbers in (0, 1) that add up to 1."""
    items = list_of(fraction(), 2, 3)

    def test(value):
        problem = items.test(value)
        if problem:
            return problem
        return None if abs(sum(value) - 1) < 1e-6 else f"they add up to {sum(value):g}, not 1"

    return Rule(items.allowed + ", adding up to 1", test)


def existing_folder() -> Rule:
    """A path to an existing folder (never silently replaced by another)."""
    def test(value):
        if not isinstance(value, (str, Path)) or not str(value):
            return "not a path"
        return None if Path(value).expanduser().is_dir() else f"folder {Path(value).expanduser()} does not exist"

    return Rule("an existing folder", test)


def dataset_name() -> Rule:
    """A registered dataset name or ``folder:/path/to/root`` (an existing folder)."""
    from .datasets import FOLDER_PREFIX, available, is_folder_name

    def test(value):
        if not isinstance(value, str):
            return "not a dataset name"
        if is_folder_name(value):
            folder = Path(value[len(FOLDER_PREFIX):]).expanduser()
            return None if folder.is_dir() else f"folder {folder} does not exist"
        return None if value in available() else "not a known dataset"

    return Rule(f"one of {available()} or {FOLDER_PREFIX}/path/to/root (one sub-folder per class)", test)


POSITIVE_INT = integer(1)
SEEDS = list_of(integer(0), unique=True)
IMAGE_SIZE = integer(8, 4096)
LEARNING_RATE = number(0, 10, low_open=True)
WEIGHTS = optional(choice("imagenet"))
COLOUR_VARIANT = choice("none", "hed_jitter", "reinhard", "greyscale", "haematoxylin")  # stain.VARIANTS

SCHEMA: dict[str, Rule] = {
    # every notebook
    "profile": text(),
    "data_dir": optional(existing_folder()),
    "output_dir": optional(text()),
    "results_dir": optional(text()),
    "seed": integer(0),
    # data
    "dataset": dataset_name(),
    "datasets": list_of(dataset_name()),
    "stand_in": optional(dataset_name()),
    "n_images": optional(POSITIVE_INT),
    "per_class": POSITIVE_INT,
    "fractions": fractions(),
    "test_fraction": fraction(),
    "near_threshold": integer(0, 64),
    "n_examples": integer(1, 64),
    # input and augmentation
    "image_size": optional(IMAGE_SIZE),  # null where P1 chooses it from its `candidates`
    "augment_size": IMAGE_SIZE,
    "baseline_image_size": IMAGE_SIZE,
    "tile_size": IMAGE_SIZE,
    "stem_stride": optional(integer(1, 16)),
    "stem_kernel": optional(integer(1, 16)),
    "tile_colour_jitter": fraction(open_low=False, open_high=False),
    "augmentation": optional(either(text(), mapping())),
    "denoise": choice("median3", "none"),
    "test_time_augmentation": either(boolean(), choice("select")),
    "tile_test_time_augmentation": boolean(),
    # models and training
    "backbone": optional(text()),
    "backbones": list_of(text()),
    "baselines": list_of(choice("knn", "resnet50", "densenet121"), min_items=0),
    "weights": WEIGHTS,
    "baseline_weights": WEIGHTS,
    "vgg_weights": WEIGHTS,
    "alexnet_weights": WEIGHTS,
    "epochs": POSITIVE_INT,
    "baseline_epochs": POSITIVE_INT,
    "cnn_epochs": POSITIVE_INT,
    "tile_epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "tile_batch_size": POSITIVE_INT,
    "learning_rate": LEARNING_RATE,
    "tile_learning_rate": LEARNING_RATE,
    "momentum": fraction(open_low=False),
    "dropout": fraction(open_low=False),
    "alexnet_fc_units": POSITIVE_INT,
    "tile_filters": list_of(POSITIVE_INT),
    "fine_tune_layers": integer(0),
    "c_grid": list_of(number(0, low_open=True)),
    "select_best_epoch": boolean(),
    "seeds": SEEDS,
    "backbone_seeds": SEEDS,
    "tile_seeds": SEEDS,
    # evaluation
    "split_seeds": SEEDS,
    "levels": list_of(choice("image", "duplicate", "field", "case")),
    "candidates": optional(list_of(mapping())),
    "imagenet_backbone": optional(text()),
    "imagenet_weights": WEIGHTS,
    "imagenet_tile": IMAGE_SIZE,
    "imagenet_stride": POSITIVE_INT,
    "tile_candidates": mapping(),
    "tile_settings": mapping(),
    "val_fraction": fraction(),
    "pretrained": optional(either(text(), mapping())),
    "pretrained_epochs": POSITIVE_INT,
    "pretrained_learning_rate": LEARNING_RATE,
    "pretrained_sizes": list_of(IMAGE_SIZE),
    "vgg_image_size": IMAGE_SIZE,
    "vgg_random_init": boolean(),
    "finetune_epochs": POSITIVE_INT,
    "finetune_learning_rate": LEARNING_RATE,
    "finetune_batch_size": POSITIVE_INT,
    "finetune_seeds": SEEDS,
    "n_folds": integer(2, 50),
    "inner_folds": integer(2, 50),
    "variants": list_of(COLOUR_VARIANT),
    "vgg_variants": list_of(COLOUR_VARIANT, min_items=0),
    "image_level_variants": list_of(COLOUR_VARIANT, min_items=0),
    "finetune_variants": list_of(COLOUR_VARIANT, min_items=0),
    "jitter_copies": POSITIVE_INT,
    "gradcam_cases": integer(0, 29),
    "synthetic_per_case": POSITIVE_INT,
    "n_boot": integer(10),
    "target": fraction(open_low=False, open_high=False),
}


def _same_kind(value, default) -> bool:
    """True when ``value`` has the type family of ``default`` (numbers mix, bools do not)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check(params: dict, defaults: dict | None = None, where: str = "notebook") -> None:
    """Raise a :class:`ParameterError` for the first parameter whose value its :data:`SCHEMA` rule refuses.

    A parameter without a rule must keep the type of its ``defaults`` entry (the value in
    the notebook's ``parameters`` cell).
    """
    for name, value in params.items():
        if name in SCHEMA:
            try:
                SCHEMA[name].check(name, value)
            except ParameterError as error:
                raise ParameterError(f"{where}: {error}") from None
        elif defaults and name in defaults and not _same_kind(value, defaults[name]):
            raise ParameterError(f"{where}: parameter {name}={value!r} must have the type of its default "
                                 f"{defaults[name]!r} ({type(defaults[name]).__name__})")


def assignments(source: str) -> dict:
    """``{name: literal value}`` of the plain assignments in ``source`` (None where not a literal)."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[target.id] = None
    return values


def notebook_defaults(path) -> dict:
    """The names the notebook's cell tagged ``parameters`` assigns, in order, with their values there."""
    cells = [c for c in json.loads(Path(path).read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    return assignments("".join(cells[0]["source"]))


def own_image_names(params: dict) -> list[str]:
    """The ``folder:/path`` datasets among the ``dataset`` / ``datasets`` parameters."""
    from .datasets import is_folder_name

    datasets = params.get("datasets")
    names = [params.get("dataset")] + (list(datasets) if isinstance(datasets, (list, tuple)) else [])
    return [name for name in names if is_folder_name(name)]
