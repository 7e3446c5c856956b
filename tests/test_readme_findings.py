"""The README's key findings quote the committed cpu results.

Each quoted number is read back from the results.json or table it comes from, with the words around it, so a
rerun that changes a number fails here until the README says the new one; the claims made in words (a gain not
distinguishable from zero, nothing above about 50% on unseen cases) are checked against the same numbers.
"""

import json
import re
from functools import cache

import pandas as pd

from hemasuite.config import repo_root

REPO_ROOT = repo_root()
RESULTS = REPO_ROOT / "reports" / "cpu" / "results"
P3, UNSEEN, P2 = "20_p3_densenet201_lymphoma", "23_p3_unseen_cases", "21_p2_cnmc_transfer"


@cache
def results(stem: str) -> dict:
    return json.loads((RESULTS / stem / "results.json").read_text())


def table(stem: str, name: str) -> pd.DataFrame:
    return pd.read_csv(RESULTS / stem / "tables" / f"{name}.csv")


def model(stem: str, key: str) -> dict:
    return next(m for m in results(stem)["models"] if m["key"] == key)


def rung(stem: str, name: str, level: str) -> dict:
    return next(r for r in results(stem)["ladder"] if r["model"] == name and r["level"] == level)


def pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def findings() -> str:
    """The README's key-findings section, its line breaks and indents as single spaces."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return " ".join(text.split("## Key findings", 1)[1].split("\n## ", 1)[0].split())


def colour(level: str, variant: str) -> pd.Series:
    evidence = table(UNSEEN, "colour_evidence")
    return evidence[(evidence["level"] == level) & (evidence["variant"] == variant)].iloc[0]


def quotes() -> list[str]:
    """Each number of the findings with its context words, as the committed results give it."""
    case = rung(P3, "tile CNN", "case")
    same_field = results("00_data_validation")["details"]["datasets"]["taleqani_all"]["validation"]["same_field"]
    ladder = {level: pct(rung("02_leakage_ladder", results("02_leakage_ladder")["ladder"][0]["model"], level)
                         ["test_accuracy"], 2) for level in ("image", "field")}
    p1, p1_exact = model("11_p1_deep_cnn", "cnn"), results("11_p1_deep_cnn")["protocol"]["details"][
        "accuracy_over_splits"]["exact"]
    p4 = model("10_p4_sequential_cnn", "cnn")
    pretraining = table(P2, "pretraining_differences").set_index(["pretrained", "from_scratch"]).loc[
        ("VGG-16 (ImageNet)", "VGG-16 (random init)")]
    image_costs = sorted(-100 * colour("image", variant)["difference"] for variant in ("greyscale", "haematoxylin"))
    return [
        f"raw pixels score {pct(rung(P3, '1-NN pixel probe', 'augmented')['test_accuracy'])}",
        f"the same tile CNN scores {pct(rung(P3, 'tile CNN', 'augmented')['test_accuracy'])} there",
        f"{pct(rung(P3, 'tile CNN', 'image')['test_accuracy'])} under image-level cross-validation",
        f"**{pct(case['test_accuracy'])} (95% CI {100 * case['ci_low']:.1f}-{pct(case['ci_high'])}) under case-level",
        f"against {pct(model(P3, 'majority_case_cv')['mean'])} for the largest class",
        f"case-level accuracy by {100 * colour('case', 'greyscale')['difference']:.1f} and "
        f"{100 * colour('case', 'haematoxylin')['difference']:.1f} points",
        f"at image level it costs {image_costs[0]:.0f}-{image_costs[1]:.0f} points",
        f"({same_field['files']} images in {same_field['groups']} groups)",
        f"{ladder['image']} with a random image split, {ladder['field']} with fields kept on one side",
        f"P1's CNN reaches {pct(p1['mean'], 2)} (CI {100 * p1_exact['ci_low']:.2f}-{pct(p1_exact['ci_high'], 2)}) "
        f"on field-level splits, in line with the paper's {pct(p1['paper_value'], 0)}",
        f"P4's CNN {pct(p4['mean'], 2)} against {pct(p4['paper_value'], 2)}",
        f"EfficientNet-Lite0 features {pct(model('10_p4_sequential_cnn', 'baseline_efficientnet_lite0')['mean'], 2)} "
        f"vs {pct(p4['mean'], 2)} for P4's CNN",
        f"VGG-16 features + SVM {pct(model('22_p5_bone_marrow', 'fe_vgg16_imagenet')['mean'], 2)} vs "
        f"{pct(model('22_p5_bone_marrow', 'fe_vgg16')['mean'], 2)} from random initialisation",
        f"at {results(P2)['parameters']['vgg_image_size']} px the gain ({100 * pretraining['difference']:+.1f} points, "
        f"CI {100 * pretraining['ci_low']:.1f} to {100 * pretraining['ci_high']:+.1f})",
    ]


def test_each_quoted_number_is_the_committed_one():
    text = findings()
    assert not [quote for quote in quotes() if quote not in text], "the README's key findings should say these"


def test_every_number_in_the_findings_is_checked():
    """A number added to the findings needs its quote above: every number there appears in a checked quote."""
    checked = " ".join(quotes())
    # not quotes: notebook names, paper ids, the CI level, the machine, and the claims checked in words below
    text = re.sub(r"`[^`]*`|\bP\d\b|95% CI|2 CPU cores|about 50%|\+/-10 points", "", findings())
    unchecked = [n for n in re.findall(r"\d+(?:\.\d+)?", text) if n not in re.findall(r"\d+(?:\.\d+)?", checked)]
    assert not unchecked, unchecked


def test_the_claims_in_words_follow_the_numbers():
    text = findings()
    pretraining = table(P2, "pretraining_differences").set_index(["pretrained", "from_scratch"]).loc[
        ("VGG-16 (ImageNet)", "VGG-16 (random init)")]
    if "is not distinguishable from zero" in text:
        assert pretraining["ci_low"] < 0 < pretraining["ci_high"]
    unseen = [m["mean"] for stem in (P3, UNSEEN) for m in results(stem)["models"] if m["key"].endswith("case_cv")
              or m["key"].endswith("_case")]
    if "beats about 50% on unseen cases" in text:
        assert max(unseen) < 0.55, max(unseen)
    half_widths = [100 * (colour("case", v)["ci_high"] - colour("case", v)["ci_low"]) / 2
                   for v in ("greyscale", "haematoxylin")]
    if "CIs about +/-10 points" in text:
        assert all(7.5 <= w <= 12.5 for w in half_widths), half_widths
