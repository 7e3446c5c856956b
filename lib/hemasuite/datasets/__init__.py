"""Named datasets: ``load_dataset(name, data_dir)`` returns a :class:`Dataset`.

Importing this package registers every loader: the Taleqani ALL, IICBU lymphoma, C-NMC
2019, ALL-IDB2 and bone-marrow subtype layouts, a generic class-per-folder set and the
synthetic generator. ``folder:/path/to/root`` names your own images (one sub-folder per
class) anywhere a dataset name is accepted.
"""

from . import all_idb, cnmc, folders, synthetic  # noqa: F401  (registration side effect)
from .folders import load_folder, load_own_folder
from .registry import FOLDER_PREFIX, REGISTRY, Dataset, available, choose, is_folder_name, load_dataset, present, spec
from .stand_in import binary_stand_in, relabel_stand_in

__all__ = ["FOLDER_PREFIX", "REGISTRY", "Dataset", "available", "binary_stand_in", "choose", "is_folder_name",
           "load_dataset", "load_folder", "load_own_folder", "present", "relabel_stand_in", "spec"]
