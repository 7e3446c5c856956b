"""Named datasets: ``load_dataset(name, data_dir)`` returns a :class:`Dataset`.

Importing this package registers every loader: the Taleqani ALL, IICBU lymphoma, C-NMC
2019, ALL-IDB2 and bone-marrow subtype layouts, a generic class-per-folder set and the
synthetic generator.
"""

from . import all_idb, cnmc, folders, synthetic  # noqa: F401  (registration side effect)
from .folders import load_folder
from .registry import REGISTRY, Dataset, available, load_dataset, spec
from .stand_in import binary_stand_in, relabel_stand_in

__all__ = ["REGISTRY", "Dataset", "available", "binary_stand_in", "load_dataset", "relabel_stand_in", "load_folder", "spec"]
