"""hemasuite: shared library of the leukemia / lymphoma replication suite.

Modules, in the order a notebook uses them:

- ``config``      profiles, notebook parameters, data-directory resolution
- ``datasets``    registry of named datasets and their loaders (plus synthetic data)
- ``imageio``     robust image reading (any mode / bit depth -> RGB uint8)
- ``validation``  completeness, readability, duplicates, size consistency
- ``splits``      seeded, stratified, group-aware splits saved as CSV manifests
- ``augment``     the augmentation families of P3, P4 and P5
- ``pipeline``    tf.data input pipeline with a decode-once cache
- ``models``      the papers' architectures and pretrained backbones
- ``training``    the one training function (strategy scope, mixed precision, timing)
- ``metrics``     per-class tables, bootstrap CIs, ROC AUC, calibration
- ``plots``       figures; ``explain`` Grad-CAM
- ``results``     results.json with protocol and environment
- ``runner``      papermill runner; ``report_site`` the Sphinx report site
- ``comparison``  the 90_comparison table and figures, README results section
- ``bench``       performance benchmark (``make bench``)
"""

__version__ = "0.1.0"
