"""One module per replicated paper, and the registry from notebook stem to paper.

Each module, named after its notebook, holds the paper's reported numbers (``REPORTED``:
``{model: {metric: value}}``, and the paper's own tables), its protocol code, and the
builders of its deviations and verdict:

- ``p4_sequential_cnn``        P4, notebook ``10_p4_sequential_cnn``: Sequential CNN, KNN / ResNet50 / DenseNet
- ``p1_deep_cnn``              P1, notebook ``11_p1_deep_cnn``: deep CNN, Table 2
- ``p3_densenet201_lymphoma``  P3, notebook ``20_p3_densenet201_lymphoma``: paper vs leakage-free protocol, tiles
- ``p3_unseen_cases``          P3, notebook ``23_p3_unseen_cases``: beyond the paper: case-level CV, stain variants
  (``REPORTED`` is empty and ``BEYOND_PAPER`` says why: no row has a paper value)
- ``p2_cnmc_transfer``         P2, notebook ``21_p2_cnmc_transfer``: C-NMC 2019 or its stand-in, Table 2
- ``p5_bone_marrow``           P5, notebook ``22_p5_bone_marrow``: features + SVM vs fine-tuning, Tables 3-4
"""

from types import ModuleType

from ..errors import ParameterError
from . import p1_deep_cnn, p2_cnmc_transfer, p3_densenet201_lymphoma, p3_unseen_cases, p4_sequential_cnn, p5_bone_marrow

# notebook stem -> paper module, in suite order
REGISTRY: dict[str, ModuleType] = {module.NOTEBOOK: module for module in (
    p4_sequential_cnn, p1_deep_cnn, p3_densenet201_lymphoma, p2_cnmc_transfer, p5_bone_marrow, p3_unseen_cases)}
COMPARISON = "90_comparison"  # the notebook that puts every replication side by side


def for_notebook(stem: str) -> ModuleType:
    """The paper module of a replication notebook."""
    if stem not in REGISTRY:
        raise ParameterError(f"{stem!r} is not a replication notebook; known: {', '.join(REGISTRY)}")
    return REGISTRY[stem]


def paper_id(stem: str) -> str | None:
    """``P1`` ... ``P5`` for a replication notebook, None for any other notebook."""
    return REGISTRY[stem].ID if stem in REGISTRY else None
