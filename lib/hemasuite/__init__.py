"""hemasuite: shared library of the leukemia / lymphoma replication suite.

The generic core, in the order a notebook uses it:

- ``config``        profiles, notebook parameters, data-directory resolution, seeds
- ``session``       the first call of every notebook: parameters, seeds, the run folder
- ``errors``        the suite's exception types
- ``datasets``      registry of named datasets and their loaders (plus synthetic data)
- ``imageio``       robust image reading (any mode / bit depth -> RGB uint8)
- ``validation``    completeness, readability, duplicates, same-field twins, size consistency
- ``same_field``    shift-tolerant detection of images of one smear field / tissue scene
- ``splits``        seeded, stratified, group-aware splits saved as CSV manifests
- ``augment``       the augmentation families of P3, P4 and P5; flips and rotations
- ``stain``         H&E colour augmentation in HED space, Reinhard normalisation, colour probes
- ``preprocess``    image pre-processing (P1's median filter)
- ``pipeline``      tf.data input pipeline with a decode-once cache
- ``models``        the papers' architectures and pretrained backbones
- ``training``      the one training function, best-epoch selection, optimisers
- ``baselines``     KNN on pixel thumbnails
- ``features``      frozen-backbone features, computed once and cached on disk
- ``experiment``    the generic workflow: prepare, train seeds, assess, protocol, verdict
- ``evaluation``    one way to evaluate: resamples (split seeds, folds) x training seeds pooled into one
                    row, the one predictions CSV, the majority-class floor, leakage-ladder rungs
- ``metrics``       per-class tables, bootstrap CIs, ROC AUC, calibration
- ``plots``         figures; ``plots_augment`` augmentation grids; ``explain`` Grad-CAM
- ``record``        the results format (typed, versioned, validated) and a notebook's ``Run``
- ``comparison``    the 90_comparison table and figures

On top of it:

- ``papers``        one module per replicated paper and the registry from notebook stem to paper
- ``tools``         runner, report site, benchmark, README updater, paper-profile preflight
"""

__version__ = "0.1.0"
