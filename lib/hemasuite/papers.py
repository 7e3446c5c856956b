"""What each paper reports, as printed in the paper (see ../shared/papers/README.md).

These are the papers' claims, kept here so that every table can put them beside this
suite's measurements. Percentages are stored as fractions.
"""

PAPERS = {
    "P1": {"citation": "Kadhim et al. 2023, deep CNN for leukemia", "dataset": "ALL-IDB1 (text) / Taleqani 4-class (table)",
           "protocol": "MATLAB deep CNN; resize + denoise; ~10% test (324 images per class row); no epochs, "
                       "optimiser or split method given",
           "models": {"deep CNN": {"accuracy": 0.98, "sensitivity": 0.9473, "specificity": 0.9887}},
           # Table 2 as printed. Its rows total 324 test images, and its counts give an overall
           # accuracy of 312/324 = 96.3%; the "98%" is the mean of the one-vs-rest ACC column.
           # Its SP column does not follow TN / (TN + FP) (Benign: 271/274 = 0.989, printed 0.9679).
           "table2": [
               {"class": "Benign", "TP": 41, "TN": 271, "FP": 3, "FN": 9, "ACC": 0.9630, "PRE": 0.9318,
                "SEN": 0.8200, "F1": 0.8723, "SP": 0.9679},
               {"class": "Early", "TP": 96, "TN": 220, "FP": 6, "FN": 2, "ACC": 0.9753, "PRE": 0.9412,
                "SEN": 0.9796, "F1": 0.9600, "SP": 0.9910},
               {"class": "Pre", "TP": 96, "TN": 226, "FP": 2, "FN": 0, "ACC": 0.9938, "PRE": 0.9796,
                "SEN": 1.0000, "F1": 0.9897, "SP": 1.0000},
               {"class": "Pro", "TP": 79, "TN": 243, "FP": 1, "FN": 1, "ACC": 0.9938, "PRE": 0.9875,
                "SEN": 0.9875, "F1": 0.9875, "SP": 0.9959}]},
    "P2": {"citation": "VGG-16 / AlexNet / CNN on C-NMC 2019", "dataset": "C-NMC 2019 (ALL vs hem)",
           "protocol": "Keras, 224x224, 15 epochs, SGD lr 1e-5, dropout, ImageNet transfer; split not stated",
           "models": {"traditional CNN": {"accuracy": 0.9165, "precision": 0.925, "recall": 0.915, "f1": 0.9175},
                      "AlexNet": {"accuracy": 0.946, "precision": 0.945, "recall": 0.945, "f1": 0.945},
                      "VGG-16": {"accuracy": 0.9744, "precision": 0.975, "recall": 0.975, "f1": 0.975}}},
    "P3": {"citation": "Hasan et al., DenseNet-201 on IICBU lymphoma", "dataset": "IICBU 2008 lymphoma (CLL/FL/MCL)",
           "protocol": "Augmentor to 1,200 per class, THEN random 80/20 split of the augmented set; 224x224, "
                       "25 epochs, batch 24, Adam 1e-4, ImageNet",
           "models": {"DenseNet-201": {"accuracy": 0.9956}}},
    "P4": {"citation": "Nadim et al., Sequential CNN for ALL", "dataset": "Taleqani ALL (4 classes)",
           "protocol": "ImageDataGenerator augmentation on train only, rescale 1/255, batch 64, Adam, "
                       "train/val/test split (sizes not stated)",
           "models": {"Sequential CNN": {"accuracy": 0.9216, "precision": 0.851, "recall": 0.960, "f1": 0.902},
                      "KNN": {"accuracy": 0.6542}, "ResNet50": {"accuracy": 0.598},
                      "DenseNet": {"accuracy": 0.7958}},
           "per_class_correct": {"Benign": [47, 53], "Pre": [143, 168], "Early": [143, 143], "Pro": [122, 128]}},
    "P5": {"citation": "Khan & Tehsin 2022, bone-marrow leukemia subtypes", "dataset": "bone marrow L1/L2/M2/M3/M5 (not public)",
           "protocol": "rot90 x4 augmentation, 75/25 split, batch 30, 20 epochs, momentum 0.9, lr 1e-3, ImageNet",
           "models": {"feature extraction + SVM": {"AlexNet": 0.7804, "Inception V3": 0.8750, "VGG-16": 0.8103,
                                                   "ResNet-101": 0.7905, "Inception V3 + ResNet-101": 0.8110},
                      "fine-tuning": {"AlexNet": 0.71, "Inception V3": 0.777, "VGG-16": 0.652,
                                      "ResNet-101": 0.69, "Inception V3 + ResNet-101": 0.761}}},
}


def reported(paper: str) -> dict:
    """The reported numbers of one paper (``P1`` ... ``P5``)."""
    return PAPERS[paper]
