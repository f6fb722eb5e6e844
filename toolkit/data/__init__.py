"""Offline data for the course: DataModules, a fast in-memory loader, shift and OOD splits, label noise."""

from toolkit.data.base import ArrayDataModule
from toolkit.data.digits import IMAGE_SIZES, DigitsDataModule
from toolkit.data.label_noise import LABEL_NOISE_KINDS, flip_labels
from toolkit.data.loader import TensorBatchLoader
from toolkit.data.mnist1d import (MNIST1D_CORRUPTIONS, MNIST1D_SHIFT_LEVELS, MNIST1DDataModule, make_mnist1d,
                                  mnist1d_cache_dir)
from toolkit.data.modular import MODULAR_ENCODINGS, ModularAdditionDataModule, modular_addition_table
from toolkit.data.shift import CORRUPTIONS, SEVERITIES, corrupt
from toolkit.data.splits import build_manifest, check_manifest, stratified_split, stratified_subsample
from toolkit.data.tabular import BreastCancerDataModule, MoonsDataModule

__all__ = [
    "ArrayDataModule",
    "BreastCancerDataModule",
    "CORRUPTIONS",
    "DigitsDataModule",
    "IMAGE_SIZES",
    "LABEL_NOISE_KINDS",
    "MNIST1DDataModule",
    "MNIST1D_CORRUPTIONS",
    "MNIST1D_SHIFT_LEVELS",
    "MODULAR_ENCODINGS",
    "ModularAdditionDataModule",
    "MoonsDataModule",
    "SEVERITIES",
    "TensorBatchLoader",
    "build_manifest",
    "check_manifest",
    "corrupt",
    "flip_labels",
    "make_mnist1d",
    "mnist1d_cache_dir",
    "modular_addition_table",
    "stratified_split",
    "stratified_subsample",
]
