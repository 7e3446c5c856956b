"""Labelled stand-in tasks built from available data for papers whose data is not here."""

from __future__ import annotations

from dataclasses import replace

from .registry import Dataset


def binary_stand_in(dataset: Dataset, negative: str, positive_name: str, negative_name: str,
                    stands_in_for: str) -> Dataset:
    """Merge every class except ``negative`` into one positive class (e.g. Benign vs ALL)."""
    frame = dataset.frame.copy()
    frame["original_label"] = frame["label"]
    frame["label"] = [negative_name if label == negative else positive_name for label in frame["label"]]
    return replace(dataset, name=f"{dataset.name}_binary", classes=[negative_name, positive_name], frame=frame,
                   stand_in=stands_in_for,
                   description=f"{dataset.description}; binary stand-in: {negative} -> {negative_name}, "
                               f"all other classes -> {positive_name}")


def relabel_stand_in(dataset: Dataset, stands_in_for: str) -> Dataset:
    """The same images and classes, marked as a stand-in for another paper's dataset (own images stay unmarked:
    they stand in for nothing)."""
    return dataset if dataset.own else replace(dataset, stand_in=stands_in_for)
