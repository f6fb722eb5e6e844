"""Offline data for the course: DataModules, a fast in-memory loader, shift and OOD splits."""

from toolkit.data.base import ArrayDataModule
from toolkit.data.digits import IMAGE_SIZES, DigitsDataModule
from toolkit.data.loader import TensorBatchLoader
from toolkit.data.shift import CORRUPTIONS, SEVERITIES, corrupt
from toolkit.data.splits import build_manifest, check_manifest, stratified_split, stratified_subsample
from toolkit.data.tabular import BreastCancerDataModule, MoonsDataModule

__all__ = [
    "ArrayDataModule",
    "BreastCancerDataModule",
    "CORRUPTIONS",
    "DigitsDataModule",
    "IMAGE_SIZES",
    "MoonsDataModule",
    "SEVERITIES",
    "TensorBatchLoader",
    "build_manifest",
    "check_manifest",
    "corrupt",
    "stratified_split",
    "stratified_subsample",
]
