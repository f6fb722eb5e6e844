"""Every public function and class refuses bad input clearly: the documented exception, raised by the
toolkit at its boundary (not from inside torch, NumPy or scikit-learn), with a message that names
the argument.

One row per bad input: wrong types, bools for numbers, out-of-range values, NaN, infinity, empty
inputs, wrong shapes and dtypes, mismatched lengths, probabilities that do not sum to 1, unknown
strings, None, missing files. A new public argument gets its rows here (CONTRIBUTING.md).

``BAD_TYPE`` accepts ``TypeError`` or ``ValueError`` for a value of the wrong type, because the
toolkit documents both ("must be an integer >= 1, got True" is a ``ValueError`` throughout); every
other row names one exception type.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from toolkit import calibration as cal
from toolkit import cost, data, governance, models, monitoring, regularization as reg, report, security, stability
from toolkit import training

BAD_TYPE = (TypeError, ValueError)
NAN, INF = float("nan"), float("inf")
TOOLKIT_DIR = Path(training.__file__).resolve().parent.parent

ROWS: list = []


def bad(case_id: str, thunk, exc, arg: str) -> None:
    """Register a bad input: ``thunk()`` must raise ``exc`` with ``arg`` in its message."""
    ROWS.append(pytest.param(thunk, exc, arg, id=case_id))


def numbers(prefix: str, make, arg: str, values, exc=ValueError) -> None:
    """Rows for several bad values of one numeric argument: ``make(value)`` returns the thunk."""
    for value in values:
        bad(f"{prefix}-{arg}={value!r}", (lambda v=value: make(v)()), exc, arg)


def typed(prefix: str, make, arg: str, values=(True, "3", None)) -> None:
    numbers(prefix, make, arg, values, BAD_TYPE)


# ---- shared inputs -------------------------------------------------------------------------------
G = torch.Generator().manual_seed(0)
PROBS = torch.softmax(torch.randn(30, 3, generator=G), dim=1)
LOGITS = torch.randn(30, 3, generator=G)
TARGETS = torch.randint(0, 3, (30,), generator=G)
IMAGES = torch.rand(4, 1, 8, 8, generator=G)
X4 = torch.rand(8, 4, generator=G)
Y4 = torch.randint(0, 3, (8,), generator=G)


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def nan_probs() -> torch.Tensor:
    p = PROBS.clone()
    p[0, 0] = NAN
    return p


def unnormalized() -> torch.Tensor:
    return PROBS * 0.5  # inside [0, 1] (so not read as logits) but rows summing to 0.5


def out_of_range_targets() -> torch.Tensor:
    t = TARGETS.clone()
    t[0] = 7
    return t


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# =================================================================================================
# data
# =================================================================================================
for cls in (data.MoonsDataModule, data.BreastCancerDataModule, data.DigitsDataModule):
    p = cls.__name__
    typed(p, lambda v, c=cls: (lambda: c(batch_size=v)), "batch_size", (True, 2.5, "3", None))
    numbers(p, lambda v, c=cls: (lambda: c(batch_size=v)), "batch_size", (0, -4))
    numbers(p, lambda v, c=cls: (lambda: c(eval_batch_size=v)), "eval_batch_size", (0, True))
    numbers(p, lambda v, c=cls: (lambda: c(val_fraction=v)), "val_fraction", (-0.1, 1.0, NAN, INF, True))
    numbers(p, lambda v, c=cls: (lambda: c(test_fraction=v)), "test_fraction", (-0.1, NAN, INF))
    numbers(p, lambda v, c=cls: (lambda: c(train_fraction=v)), "train_fraction", (0.0, 1.5, NAN, INF, True))
    typed(p, lambda v, c=cls: (lambda: c(seed=v)), "seed", (-1, 1.5, "0", True))
bad("Moons-fractions-sum", lambda: data.MoonsDataModule(val_fraction=0.5, test_fraction=0.5), ValueError,
    "val_fraction")
numbers("Moons", lambda v: (lambda: data.MoonsDataModule(n_samples=v)), "n_samples", (0, -5, True, 2.5))
numbers("Moons", lambda v: (lambda: data.MoonsDataModule(noise=v)), "noise", (-0.1, NAN, INF, True))
numbers("Digits", lambda v: (lambda: data.DigitsDataModule(image_size=v)), "image_size", (7, 0, True, "8"))
for _module in (data.DigitsDataModule, data.MNIST1DDataModule):
    numbers(_module.__name__, lambda v, c=_module: (lambda: c(ood_classes=v)), "ood_classes",
            ((10,), (1, 1), (-1,), tuple(range(9)), (1.5,), (True,)))
    typed(_module.__name__, lambda v, c=_module: (lambda: c(ood_classes=v)), "ood_classes", ("89", 5, None))
bad("Digits-flatten-str", lambda: data.DigitsDataModule(flatten="no"), TypeError, "flatten")
bad("Digits-normalize-int", lambda: data.DigitsDataModule(normalize=2), TypeError, "normalize")
bad("Digits-tensors-split", lambda: data.DigitsDataModule().tensors("training"), ValueError, "split")
bad("Digits-shifted-corruption", lambda: data.DigitsDataModule().shifted_tensors("fog", 3), ValueError,
    "corruption")
bad("Digits-shifted-severity", lambda: data.DigitsDataModule().shifted_tensors("rotation", 6), ValueError,
    "severity")
bad("Digits-ood-empty", lambda: data.DigitsDataModule().ood_tensors(), ValueError, "ood_classes")

# TensorBatchLoader
bad("Loader-no-tensors", lambda: data.TensorBatchLoader(batch_size=2), ValueError, "tensors")
bad("Loader-array", lambda: data.TensorBatchLoader(np.zeros(3), batch_size=2), TypeError, "tensors")
bad("Loader-list", lambda: data.TensorBatchLoader([1, 2, 3], batch_size=2), TypeError, "tensors")
bad("Loader-lengths", lambda: data.TensorBatchLoader(torch.zeros(3), torch.zeros(4), batch_size=2), ValueError,
    "tensors")
bad("Loader-scalar", lambda: data.TensorBatchLoader(torch.tensor(1.0), batch_size=2), ValueError, "tensors")
numbers("Loader", lambda v: (lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=v)), "batch_size",
        (0, -1, True, 1.5, "2", None))
numbers("Loader", lambda v: (lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2, num_replicas=v)),
        "num_replicas", (0, True, 1.5))
numbers("Loader", lambda v: (lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2, num_replicas=2, rank=v)),
        "rank", (2, -1, True))
numbers("Loader", lambda v: (lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2, seed=v)), "seed",
        (-1, 1.5, "0"))
bad("Loader-shuffle-str", lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2, shuffle="yes"), TypeError,
    "shuffle")
bad("Loader-drop_last-int", lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2, drop_last=1), TypeError,
    "drop_last")
bad("Loader-state-wrong", lambda: data.TensorBatchLoader(torch.zeros(3), batch_size=2).load_state_dict([]),
    ValueError, "state_dict")

# corrupt
numbers("corrupt", lambda v: (lambda: data.corrupt(IMAGES, v, 3)), "corruption", ("fog", "", None, 3))
numbers("corrupt", lambda v: (lambda: data.corrupt(IMAGES, "rotation", v)), "severity", (0, 6, True, 2.5, "3"))
bad("corrupt-nan", lambda: data.corrupt(torch.full((1, 1, 8, 8), NAN), "contrast", 3), ValueError, "images")
bad("corrupt-inf", lambda: data.corrupt(torch.full((1, 1, 8, 8), INF), "contrast", 3), ValueError, "images")
bad("corrupt-range", lambda: data.corrupt(IMAGES * 5, "contrast", 3), ValueError, "images")
bad("corrupt-3d", lambda: data.corrupt(IMAGES[0], "contrast", 3), ValueError, "images")
bad("corrupt-int", lambda: data.corrupt(IMAGES.long(), "contrast", 3), TypeError, "images")
bad("corrupt-array", lambda: data.corrupt(IMAGES.numpy(), "contrast", 3), TypeError, "images")
numbers("corrupt", lambda v: (lambda: data.corrupt(IMAGES, "rotation", 3, seed=v)), "seed", (-1, 1.5, "0"))

# splits
LABELS = np.repeat(np.arange(3), 10)
numbers("stratified_split", lambda v: (lambda: data.stratified_split(LABELS, v, 0.2, 0)), "val_fraction",
        (-0.1, 1.0, NAN, INF, "0.2"))
numbers("stratified_split", lambda v: (lambda: data.stratified_split(LABELS, 0.2, v, 0)), "test_fraction",
        (-0.1, NAN, True))
bad("stratified_split-float-labels", lambda: data.stratified_split(LABELS + 0.5, 0.2, 0.2, 0), TypeError, "labels")
bad("stratified_split-2d-labels", lambda: data.stratified_split(LABELS.reshape(3, 10), 0.2, 0.2, 0), ValueError,
    "labels")
bad("stratified_split-empty", lambda: data.stratified_split(np.array([], dtype=int), 0.2, 0.2, 0), ValueError,
    "labels")
numbers("stratified_split", lambda v: (lambda: data.stratified_split(LABELS, 0.2, 0.2, v)), "seed", (-1, 1.5, None))
numbers("stratified_subsample", lambda v: (lambda: data.stratified_subsample(np.arange(30), LABELS, v, 0)),
        "fraction", (0.0, 1.5, NAN, True))
bad("stratified_subsample-indices", lambda: data.stratified_subsample(np.arange(40), LABELS, 0.5, 0), ValueError,
    "indices")
bad("check_manifest-missing", lambda: data.check_manifest({}, "/nonexistent/manifest.json"), FileNotFoundError,
    "manifest")
bad("check_manifest-type", lambda: data.check_manifest([], "x.json"), TypeError, "manifest")
bad("build_manifest-name", lambda: data.build_manifest(3, np.zeros((3, 2)), np.zeros(3, int), {}, {}), TypeError,
    "name")
bad("build_manifest-lengths", lambda: data.build_manifest("x", np.zeros((3, 2)), np.zeros(4, int), {}, {}),
    ValueError, "labels")
bad("build_manifest-splits", lambda: data.build_manifest("x", np.zeros((3, 2)), np.zeros(3, int), [], {}),
    TypeError, "splits")

# modular arithmetic (grokking)
MOD = data.ModularAdditionDataModule
numbers("Modular", lambda v: (lambda: MOD(modulus=v)), "modulus", (1, 0, 1001, True, 7.0, "7", None))
numbers("modular_addition_table", lambda v: (lambda: data.modular_addition_table(v)), "modulus", (1, True, 2.5))
numbers("Modular", lambda v: (lambda: MOD(train_fraction=v)), "train_fraction", (0.0, 1.0, -0.5, NAN, INF, True, "0.5"))
numbers("Modular", lambda v: (lambda: MOD(val_fraction=v)), "val_fraction", (-0.1, 1.0, NAN, True))
bad("Modular-no-test", lambda: MOD(modulus=5, train_fraction=0.6, val_fraction=0.4), ValueError, "val_fraction")
bad("Modular-no-train", lambda: MOD(modulus=3, train_fraction=0.01), ValueError, "train_fraction")
numbers("Modular", lambda v: (lambda: MOD(encoding=v)), "encoding", ("onehot", "", None, 2))
numbers("Modular", lambda v: (lambda: MOD(batch_size=v)), "batch_size", (0, -1, True, 2.5, "full"))
numbers("Modular", lambda v: (lambda: MOD(eval_batch_size=v)), "eval_batch_size", (0, True, 2.5))
numbers("Modular", lambda v: (lambda: MOD(seed=v)), "seed", (-1, 1.5, "0", True, None))
bad("Modular-tensors-split", lambda: MOD(modulus=5).tensors("held_out"), ValueError, "split")
bad("Modular-pairs-split", lambda: MOD(modulus=5).pairs("training"), ValueError, "split")

# =================================================================================================
# models
# =================================================================================================
numbers("make_norm", lambda v: (lambda: models.make_norm(v, 8, False)), "norm", ("batchnorm", "Batch", "", None, 1))
numbers("make_norm", lambda v: (lambda: models.make_norm("batch", v, False)), "num_features", (0, True, 2.5))
bad("make_norm-spatial", lambda: models.make_norm("batch", 8, "yes"), TypeError, "spatial")
numbers("make_dropout", lambda v: (lambda: models.make_dropout(v)), "dropout", (-0.5, 1.0, 1.5, NAN, INF, True, "0.1",
                                                                              None))
bad("make_dropout-layer", lambda: models.make_dropout(nn.Dropout(0.1)), TypeError, "dropout")
bad("make_dropout-factory-returns", lambda: models.make_dropout(lambda: 0.5), TypeError, "dropout")
for cls, kwargs in ((models.MLP, dict(in_features=4, num_classes=3)), (models.SmallCNN, {}), (models.ResNet, {})):
    p = cls.__name__
    numbers(p, lambda v, c=cls, k=kwargs: (lambda: c(**k, norm=v)), "norm", ("batchnorm", "BN", None))
    numbers(p, lambda v, c=cls, k=kwargs: (lambda: c(**k, dropout=v)), "dropout", (-0.5, 1.0, NAN, True))
    bad(f"{p}-dropout-layer", lambda c=cls, k=kwargs: c(**k, dropout=nn.Dropout(0.2)), TypeError, "dropout")
    numbers(p, lambda v, c=cls, k=kwargs: (lambda: c(**(k | {"num_classes": v}))), "num_classes", (0, True, 2.5))
numbers("MLP", lambda v: (lambda: models.MLP(v, 3)), "in_features", (0, True, 2.5, "4"))
numbers("MLP", lambda v: (lambda: models.MLP(4, 3, hidden_sizes=v)), "hidden_sizes", ((0,), (8, -1), 8, (2.5,),
                                                                                        (True,)), BAD_TYPE)
numbers("SmallCNN", lambda v: (lambda: models.SmallCNN(in_channels=v)), "in_channels", (0, True))
numbers("SmallCNN", lambda v: (lambda: models.SmallCNN(channels=v)), "channels", ((), (0, 8), 16), BAD_TYPE)
numbers("ResNet", lambda v: (lambda: models.ResNet(width=v)), "width", (0, True, 2.5))
numbers("ResNet", lambda v: (lambda: models.ResNet(blocks_per_stage=v)), "blocks_per_stage", ((), (0,), 2), BAD_TYPE)
numbers("ResNet", lambda v: (lambda: models.ResNet(drop_path_rate=v)), "drop_path_rate", (-0.1, 1.0, NAN, True))
numbers("PreActBlock", lambda v: (lambda: models.PreActBlock(4, 8, v, "batch")), "stride", (0, True, 1.5))
numbers("PreActBlock", lambda v: (lambda: models.PreActBlock(4, 8, 1, v)), "norm", ("bn", None))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(patch_size=v)), "patch_size", (3, 0, True))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(dim=v)), "dim", (0, 30, True))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(heads=v)), "heads", (0, 5, True))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(depth=v)), "depth", (0, True))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(mlp_ratio=v)), "mlp_ratio", (0, -1, NAN, INF, True))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(norm_position=v)), "norm_position", ("middle", None))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(pool=v)), "pool", ("max", None))
numbers("TinyViT", lambda v: (lambda: models.TinyViT(dropout=v)), "dropout", (-0.1, 1.0, NAN))
numbers("SequenceTransformer", lambda v: (lambda: models.SequenceTransformer(patch_size=v)), "patch_size",
        (3, 0, True))
numbers("SequenceTransformer", lambda v: (lambda: models.SequenceTransformer(dim=v)), "dim", (0, 30, True))
numbers("SequenceTransformer", lambda v: (lambda: models.SequenceTransformer(norm_position=v)), "norm_position",
        ("middle", None))
numbers("SequenceTransformer", lambda v: (lambda: models.SequenceTransformer(pool=v)), "pool", ("max", None))
typed("SequenceTransformer", lambda v: (lambda: models.SequenceTransformer(qk_norm=v)), "qk_norm", ("yes", 1, None))
numbers("SelfAttention", lambda v: (lambda: models.SelfAttention(16, heads=v)), "heads", (0, 3, True))
numbers("SelfAttention", lambda v: (lambda: models.SelfAttention(16, 2, dropout=v)), "dropout", (-0.1, 1.0, NAN, True))
numbers("TransformerBlock", lambda v: (lambda: models.TransformerBlock(16, 2, dropout=v)), "dropout", (1.0, NAN, "0"))
typed("TinyViT", lambda v: (lambda: models.TinyViT(qk_norm=v)), "qk_norm", ("yes", 1, None))
numbers("MoE", lambda v: (lambda: models.MoE(4, num_experts=v)), "num_experts", (1, 0, True, 2.5))
numbers("MoE", lambda v: (lambda: models.MoE(4, num_experts=4, top_k=v)), "top_k", (0, 5, True))
numbers("MoE", lambda v: (lambda: models.MoE(4, aux_loss_coef=v)), "aux_loss_coef", (-1, NAN, INF, True))
numbers("MoE", lambda v: (lambda: models.MoE(v)), "in_features", (0, True))
bad("MoE-forward-shape", lambda: models.MoE(4)(torch.zeros(2, 5)), ValueError, "x")
numbers("MoEMLP", lambda v: (lambda: models.MoEMLP(4, v)), "num_classes", (0, True))
bad("MoEMLP-forward-shape", lambda: models.MoEMLP(4, 3)(torch.zeros(2, 5)), ValueError, "input")
numbers("expert_fractions", lambda v: (lambda: models.expert_fractions(torch.tensor([0, 1, 5]), v)), "num_experts",
        (0, True, 2.5))
bad("expert_fractions-index-range", lambda: models.expert_fractions(torch.tensor([0, 1, 5]), 3), ValueError,
    "expert_index")
bad("expert_fractions-negative", lambda: models.expert_fractions(torch.tensor([0, -1]), 3), ValueError,
    "expert_index")
bad("expert_fractions-float", lambda: models.expert_fractions(torch.tensor([0.0, 1.0]), 3), TypeError,
    "expert_index")
bad("expert_fractions-dtype", lambda: models.expert_fractions(torch.tensor([0, 1]), 3, dtype=torch.long), TypeError,
    "dtype")
bad("load_balancing_loss-shape", lambda: models.load_balancing_loss(torch.rand(4), torch.zeros(4, 1, dtype=torch.long)),
    ValueError, "router_probs")
bad("load_balancing_loss-rows", lambda: models.load_balancing_loss(torch.rand(4, 3), torch.zeros(5, 1,
                                                                                              dtype=torch.long)),
    ValueError, "expert_index")
bad("load_balancing_loss-index-range", lambda: models.load_balancing_loss(
    torch.softmax(torch.rand(4, 3), 1), torch.full((4, 1), 3)), ValueError, "expert_index")

# =================================================================================================
# training
# =================================================================================================
def cm(**kwargs):
    return lambda: training.ClassifierModule(**({"backbone": linear(), "num_classes": 3} | kwargs))


bad("ClassifierModule-backbone-factory", cm(backbone=lambda: linear()), TypeError, "backbone")
bad("ClassifierModule-backbone-None", cm(backbone=None), TypeError, "backbone")
numbers("ClassifierModule", lambda v: cm(num_classes=v), "num_classes", (1, 0, True, 3.0, "3"))
numbers("ClassifierModule", lambda v: cm(optimizer=v), "optimizer", ("adam", "SGD", None))
numbers("ClassifierModule", lambda v: cm(schedule=v), "schedule", ("linear", None))
numbers("ClassifierModule", lambda v: cm(lr=v), "lr", (0, -1e-3, NAN, INF, True, "1e-3"))
numbers("ClassifierModule", lambda v: cm(weight_decay=v), "weight_decay", (-1, NAN, INF))
numbers("ClassifierModule", lambda v: cm(momentum=v), "momentum", (1.0, -0.1, NAN))
numbers("ClassifierModule", lambda v: cm(warmup_fraction=v), "warmup_fraction", (1.0, -0.1, NAN))
numbers("ClassifierModule", lambda v: cm(label_smoothing=v), "label_smoothing", (1.0, -0.1, NAN, INF))
numbers("ClassifierModule", lambda v: cm(z_loss=v), "z_loss", (-1e-4, NAN, INF, True))
numbers("ClassifierModule", lambda v: cm(ece_bins=v), "ece_bins", (0, True, 2.5))
bad("ClassifierModule-dict-batch", lambda: training.ClassifierModule(linear(), 3).training_step(
    {"x": X4, "y": Y4}, 0), TypeError, "batch")
bad("ClassifierModule-tensor-batch", lambda: training.ClassifierModule(linear(), 3).training_step(X4, 0), TypeError,
    "batch")
bad("ClassifierModule-declared-classes", cm(backbone=models.MLP(4, 5)), ValueError, "num_classes")


def fit_call(**kwargs):
    base = {"model": _Module, "data": data.MoonsDataModule(n_samples=60), "max_epochs": 1, "test": False,
            "accelerator": "cpu", "enable_progress_bar": False}
    return lambda: training.fit(**(base | kwargs))


numbers("fit", lambda v: fit_call(max_epochs=v), "max_epochs", (0, -1, True, 1.5, "2"))
numbers("fit", lambda v: fit_call(seed=v), "seed", (-1, True, 1.5))
bad("fit-callback-type", fit_call(callbacks=[object()]), TypeError, "callbacks")
bad("fit-callback-class", fit_call(callbacks=[pl.callbacks.EarlyStopping]), TypeError, "callbacks")
bad("fit-model-None", fit_call(model=None), TypeError, "model")
bad("fit-model-module", fit_call(model=linear()), TypeError, "model")
bad("fit-data-loader", fit_call(data=data.TensorBatchLoader(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long),
                                                             batch_size=2)), TypeError, "data")
bad("fit-data-torch-loader", fit_call(data=torch.utils.data.DataLoader(torch.zeros(4))), TypeError, "data")
bad("fit-ckpt-missing", fit_call(ckpt_path="/nonexistent/x.ckpt"), FileNotFoundError, "ckpt_path")
bad("fit-ckpt-type", fit_call(ckpt_path=3), TypeError, "ckpt_path")
bad("fit-name-type", fit_call(name=3), TypeError, "name")
bad("fit-name-empty", fit_call(name=""), ValueError, "name")
bad("run_seeds-instance", lambda: training.run_seeds(_Module(), data.MoonsDataModule()), TypeError, "model")
numbers("run_seeds", lambda v: (lambda: training.run_seeds(_Module, data.MoonsDataModule(), seeds=v)), "seeds",
        ((), (0, 0)))
numbers("run_seeds", lambda v: (lambda: training.run_seeds(_Module, data.MoonsDataModule(), seeds=v)), "seed",
        ((-1,), (1.5,), (True,)))  # each seed is checked by fit before anything runs
bad("evaluate-module", lambda: training.evaluate(linear(), []), TypeError, "module")
bad("evaluate-loader-None", lambda: training.evaluate(_Module(), None), TypeError, "loader")
bad("predict_logits-module", lambda: training.predict_logits(linear(), []), TypeError, "module")
bad("predict_logits-loader-None", lambda: training.predict_logits(_Module(), None), TypeError, "loader")
bad("summarize-missing", lambda: training.summarize(pd.DataFrame({"a": [1]}), ["b"]), ValueError, "metrics")
bad("summarize-frame", lambda: training.summarize({"a": [1]}, ["a"]), TypeError, "frame")
bad("summarize-by", lambda: training.summarize(pd.DataFrame({"a": [1]}), ["a"], by="z"), ValueError, "by")
bad("read_history-type", lambda: training.read_history(3), TypeError, "log_dir")


def members_call(**kwargs):
    base = {"model_factory": lambda: training.ClassifierModule(nn.Linear(2, 2), 2), "data": data.MoonsDataModule(
        n_samples=60), "members": [{"seed": 0}], "max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False}
    return lambda: training.train_members(**(base | kwargs))


bad("train_members-factory-instance", members_call(model_factory=training.ClassifierModule(nn.Linear(2, 2), 2)),
    TypeError, "model_factory")
bad("train_members-factory-None", members_call(model_factory=None), TypeError, "model_factory")
bad("train_members-factory-returns", members_call(model_factory=lambda: 3), TypeError, "model_factory")
bad("train_members-factory-lightning", members_call(model_factory=_Module), TypeError, "model_factory")
bad("train_members-data-loader", members_call(data=data.TensorBatchLoader(X4, Y4, batch_size=2)), TypeError, "data")
bad("train_members-members-dict", members_call(members={"seed": 0}), TypeError, "members")
bad("train_members-members-empty", members_call(members=[]), ValueError, "members")
bad("train_members-member-type", members_call(members=[0]), TypeError, "members[0]")
bad("train_members-member-key", members_call(members=[{"seed": 0, "momentum": 0.5}]), ValueError, "members[0]")
bad("train_members-member-no-seed", members_call(members=[{"lr": 0.1}]), ValueError, "seed")
for key, values in (("seed", (-1, True, 1.5, "0")), ("lr", (0, -1.0, NAN, INF, True, "0.1")),
                    ("weight_decay", (-0.1, NAN, INF, None)), ("dropout", (1.0, -0.1, NAN, True)),
                    ("label_smoothing", (1.0, -0.1, NAN, True)), ("mixup", (-0.2, NAN, INF, "0.2")),
                    ("augment", (-1.0, NAN, INF, None)), ("z_loss", (-1e-4, NAN, INF, True))):
    numbers("train_members", lambda v, key=key: members_call(members=[{"seed": 0} | {key: v}]), key, values)
bad("train_members-lazy", members_call(model_factory=lambda: training.ClassifierModule(nn.LazyLinear(2), 2)),
    ValueError, "lazy")
bad("train_members-dropout-no-layer", members_call(members=[{"seed": 0, "dropout": 0.5}]), ValueError, "dropout")


def _widening():  # a factory that builds a wider network at every call
    widths = iter(range(2, 100))
    def factory():
        width = next(widths)
        return training.ClassifierModule(nn.Sequential(nn.Linear(2, width), nn.Linear(width, 2)), 2)
    return factory


bad("train_members-architectures", members_call(model_factory=_widening(), members=[{"seed": 0}, {"seed": 1}]),
    ValueError, "architecture")
numbers("train_members", lambda v: members_call(max_epochs=v), "max_epochs", (0, True, 1.5))
bad("train_members-seed-kwarg", members_call(seed=1), ValueError, "seed")
bad("train_members-clip", members_call(gradient_clip_val=1.0), ValueError, "gradient_clip_val")
bad("train_members-devices", members_call(devices=2), ValueError, "devices")
bad("train_members-return-members", members_call(return_members=1), TypeError, "return_members")
bad("train_members-return-history", members_call(return_history="yes"), TypeError, "return_history")
bad("train_members-config", members_call(config=[1]), TypeError, "config")
bad("train_members-restore_best-metric", members_call(restore_best="val_f1"), ValueError, "restore_best")
bad("train_members-restore_best-train", members_call(restore_best="train_acc"), ValueError, "restore_best")
bad("train_members-augment-type", members_call(augment="flip"), TypeError, "augment")
bad("train_members-augment-missing", members_call(members=[{"seed": 0, "augment": 1.0}]), ValueError, "augment")


class _WrongBatched:  # an augmentation whose batched path drops a feature
    def __call__(self, x, strength, generator):
        return x

    def batched(self, x, strengths, generators):
        return x[..., :1]


bad("train_members-augment-batched-shape", members_call(members=[{"seed": 0, "augment": 1.0}],
                                                        augment=_WrongBatched()), ValueError, "augment.batched")

# =================================================================================================
# stability
# =================================================================================================
numbers("AdaptiveGradientClipping", lambda v: (lambda: stability.AdaptiveGradientClipping(clip_factor=v)),
        "clip_factor", (0, -0.1, NAN, INF, True))
numbers("AdaptiveGradientClipping", lambda v: (lambda: stability.AdaptiveGradientClipping(eps=v)), "eps",
        (-1, NAN, INF))
bad("AdaptiveGradientClipping-exclude", lambda: stability.AdaptiveGradientClipping(exclude="bias"), TypeError,
    "exclude")
numbers("adaptive_clip_grad_", lambda v: (lambda: stability.adaptive_clip_grad_(linear().parameters(), v)),
        "clip_factor", (0, NAN, INF))
numbers("GradientNormMonitor", lambda v: (lambda: stability.GradientNormMonitor(layer_every_n_steps=v)),
        "layer_every_n_steps", (0, -1, True, 2.5))
bad("GradientNormMonitor-log", lambda: stability.GradientNormMonitor(log="yes"), TypeError, "log")
numbers("LossSpikeGuard", lambda v: (lambda: stability.LossSpikeGuard(window=v)), "window", (1, 0, True, 2.5))
numbers("LossSpikeGuard", lambda v: (lambda: stability.LossSpikeGuard(k=v)), "k", (0, -1, NAN, INF, True))
numbers("LossSpikeGuard", lambda v: (lambda: stability.LossSpikeGuard(min_history=v)), "min_history", (0, True, 1.5))
numbers("LossSpikeGuard", lambda v: (lambda: stability.LossSpikeGuard(rel_floor=v)), "rel_floor", (-0.1, NAN, INF))
numbers("LossSpikeGuard", lambda v: (lambda: stability.LossSpikeGuard(max_consecutive=v)), "max_consecutive",
        (0, True))
numbers("NonFiniteGuard", lambda v: (lambda: stability.NonFiniteGuard(policy=v)), "policy", ("ignore", None, 1))
numbers("NonFiniteGuard", lambda v: (lambda: stability.NonFiniteGuard(lr_factor=v)), "lr_factor",
        (0, 1.5, NAN, INF, True))
numbers("NonFiniteGuard", lambda v: (lambda: stability.NonFiniteGuard(snapshot_every_n_steps=v)),
        "snapshot_every_n_steps", (0, True, 2.5))
numbers("NonFiniteGuard", lambda v: (lambda: stability.NonFiniteGuard(max_rollbacks=v)), "max_rollbacks",
        (-1, True, 2.5))
numbers("UpdateRatioMonitor", lambda v: (lambda: stability.UpdateRatioMonitor(every_n_steps=v)), "every_n_steps",
        (0, True, 2.5))
bad("UpdateRatioMonitor-weights_only", lambda: stability.UpdateRatioMonitor(weights_only="yes"), TypeError,
    "weights_only")
numbers("NonFiniteGuard", lambda v: (lambda: stability.NonFiniteGuard(max_skipped_fraction=v)),
        "max_skipped_fraction", (0, 1, -0.1, NAN, True))
numbers("ActivationHistogramMonitor", lambda v: (lambda: stability.ActivationHistogramMonitor(every_n_steps=v)),
        "every_n_steps", (0, True, 2.5))
numbers("ActivationHistogramMonitor", lambda v: (lambda: stability.ActivationHistogramMonitor(bins=v)), "bins",
        (0, True, 2.5))
numbers("ActivationHistogramMonitor", lambda v: (lambda: stability.ActivationHistogramMonitor(activation_range=v)),
        "activation_range", ((1.0, 0.0), (0.0, NAN), (0.0, INF), (0.0,), 4.0, (True, 2.0)))
numbers("ActivationHistogramMonitor",
        lambda v: (lambda: stability.ActivationHistogramMonitor(gradient_log10_range=v)), "gradient_log10_range",
        ((-1.0, -1.0), (NAN, 0.0), None))
typed("ActivationHistogramMonitor", lambda v: (lambda: stability.ActivationHistogramMonitor(module_types=v)),
      "module_types", ((), ("ReLU",), (int,), None))
bad("ActivationHistogramMonitor-gradients", lambda: stability.ActivationHistogramMonitor(gradients="yes"),
    TypeError, "gradients")
numbers("divergence_lr", lambda v: (lambda: stability.divergence_lr([1e-3, 1e-2, 1e-1], [1.0, 0.9, 5.0], v)),
        "threshold", (0, -1, NAN, INF, True))
numbers("debias_lightning_losses", lambda v: (lambda: stability.debias_lightning_losses([1.0], v)), "beta",
        (0, 1, NAN, True))
bad("divergence_lr-lengths", lambda: stability.divergence_lr([1e-3, 1e-2], [1.0]), ValueError, "losses")
bad("divergence_lr-empty", lambda: stability.divergence_lr([], []), ValueError, "lrs")
bad("divergence_lr-nan-lr", lambda: stability.divergence_lr([NAN, 1e-2], [1.0, 1.0]), ValueError, "lrs")
bad("divergence_lr-negative-lr", lambda: stability.divergence_lr([-1.0, 1e-2], [1.0, 1.0]), ValueError, "lrs")


def lr_range(**kwargs):
    return lambda: stability.lr_range_test(**({"model": _Module(), "data": data.MoonsDataModule(n_samples=60)}
                                              | kwargs))


numbers("lr_range_test", lambda v: lr_range(min_lr=v), "min_lr", (0, -1, NAN, INF, True))
numbers("lr_range_test", lambda v: lr_range(max_lr=v), "max_lr", (0, NAN, INF, 1e-6))
numbers("lr_range_test", lambda v: lr_range(num_training=v), "num_training", (0, 1, True, 2.5))
numbers("lr_range_test", lambda v: lr_range(early_stop_threshold=v), "early_stop_threshold", (0, NAN, INF))
bad("lr_range_test-model", lr_range(model=linear()), TypeError, "model")
bad("lr_range_test-data", lr_range(data=5), TypeError, "data")
bad("seed_spread-metric", lambda: stability.seed_spread(pd.DataFrame({"variant": ["a"], "x": [1.0]}), metric="y"),
    ValueError, "metric")
bad("seed_spread-by", lambda: stability.seed_spread(pd.DataFrame({"test_acc": [1.0]}), by="v"), ValueError, "by")
bad("seed_spread-frame", lambda: stability.seed_spread({"test_acc": [1.0]}), TypeError, "frame")
bad("seed_variance-variants", lambda: stability.seed_variance([], data.MoonsDataModule()), BAD_TYPE, "variants")
bad("seed_variance-empty", lambda: stability.seed_variance({}, data.MoonsDataModule()), ValueError, "variants")
bad("seed_variance-seeds", lambda: stability.seed_variance({"a": {"model": _Module}}, data.MoonsDataModule(),
                                                           seeds=[]), ValueError, "seeds")
bad("unitwise_norm-type", lambda: stability.unitwise_norm(np.zeros(3)), TypeError, "x")
bad("skip_optimizer_step-type", lambda: stability.skip_optimizer_step("model"), TypeError, "target")

# =================================================================================================
# regularization
# =================================================================================================
for name, fn in (("drop_path", reg.drop_path), ("gaussian_dropout", reg.gaussian_dropout)):
    arg = "drop_prob" if name == "drop_path" else "p"
    numbers(name, lambda v, f=fn, a=arg: (lambda: f(X4, **{a: v})), arg, (-0.1, 1.0, NAN, INF, True, "0.1"))
    bad(f"{name}-x-array", lambda f=fn: f(X4.numpy()), TypeError, "x")
numbers("DropPath", lambda v: (lambda: reg.DropPath(v)), "drop_prob", (-0.1, 1.0, NAN, True))
numbers("GaussianDropout", lambda v: (lambda: reg.GaussianDropout(v)), "p", (-0.1, 1.0, NAN, True))
numbers("drop_block_2d", lambda v: (lambda: reg.drop_block_2d(IMAGES, drop_prob=v)), "drop_prob", (-0.1, 1.0, NAN))
numbers("drop_block_2d", lambda v: (lambda: reg.drop_block_2d(IMAGES, block_size=v)), "block_size",
        (0, 9, True, 2.5))
bad("drop_block_2d-3d", lambda: reg.drop_block_2d(IMAGES[0]), ValueError, "x")
numbers("DropBlock2d", lambda v: (lambda: reg.DropBlock2d(drop_prob=v)), "drop_prob", (-0.1, 1.0, NAN, INF))
numbers("DropBlock2d", lambda v: (lambda: reg.DropBlock2d(block_size=v)), "block_size", (0, True, 1.5))
numbers("DropBlockSchedule", lambda v: (lambda: reg.DropBlockSchedule(drop_prob=v)), "drop_prob", (-0.1, 1.0, NAN))
numbers("DropBlockSchedule", lambda v: (lambda: reg.DropBlockSchedule(start_drop_prob=v)), "start_drop_prob",
        (-0.1, 1.0, NAN))
numbers("DropBlockSchedule", lambda v: (lambda: reg.DropBlockSchedule(ramp_fraction=v)), "ramp_fraction",
        (0, 1.5, NAN, INF))
bad("DropBlockSchedule-layer_types", lambda: reg.DropBlockSchedule(layer_types=(3,)), TypeError, "layer_types")
numbers("drop_block_seed_rate", lambda v: (lambda: reg.drop_block_seed_rate(v, 3, 8, 8)), "drop_prob", (-0.1, NAN))
numbers("drop_path_rates", lambda v: (lambda: reg.drop_path_rates(4, v)), "drop_path_rate", (-0.1, 1.0, NAN, INF))
numbers("drop_path_rates", lambda v: (lambda: reg.drop_path_rates(v, 0.1)), "num_blocks", (0, True, 2.5))
numbers("drop_connect_linear", lambda v: (lambda: reg.drop_connect_linear(X4, torch.zeros(3, 4), p=v)), "p",
        (-0.1, 1.0, NAN))
bad("drop_connect_linear-shape", lambda: reg.drop_connect_linear(X4, torch.zeros(3, 5)), ValueError, "weight")
numbers("DropConnectLinear", lambda v: (lambda: reg.DropConnectLinear(4, 3, p=v)), "p", (-0.1, 1.0, NAN, True))
numbers("DropConnectLinear", lambda v: (lambda: reg.DropConnectLinear(v, 3)), "in_features", (0, True))
numbers("ConcreteDropout", lambda v: (lambda: reg.ConcreteDropout(p_init=v)), "p_init", (0, 1.0, NAN, True))
numbers("ConcreteDropout", lambda v: (lambda: reg.ConcreteDropout(temperature=v)), "temperature", (0, -1, NAN, INF))
numbers("ConcreteDropout", lambda v: (lambda: reg.ConcreteDropout(weight_regularizer=v)), "weight_regularizer",
        (-1, NAN, INF))
numbers("ConcreteDropout", lambda v: (lambda: reg.ConcreteDropout(dropout_regularizer=v)), "dropout_regularizer",
        (-1, NAN, INF))
bad("ConcreteDropout-layer-factory", lambda: reg.ConcreteDropout(layer=lambda: linear()), TypeError, "layer")
numbers("concrete_dropout", lambda v: (lambda: reg.concrete_dropout(X4, torch.tensor(0.0), temperature=v)),
        "temperature", (0, NAN, INF))
bad("concrete_dropout-p_logit", lambda: reg.concrete_dropout(X4, 0.0), TypeError, "p_logit")
numbers("VariationalLinear", lambda v: (lambda: reg.VariationalLinear(4, 3, threshold=v)), "threshold",
        (NAN, True, "3"))  # +-inf are allowed: never / always prune (notebook 02 uses inf)
numbers("VariationalLinear", lambda v: (lambda: reg.VariationalLinear(v, 3)), "in_features", (0, True))
numbers("VariationalConv2d", lambda v: (lambda: reg.VariationalConv2d(1, 4, 3, threshold=v)), "threshold",
        (NAN, None))
numbers("VariationalConv2d", lambda v: (lambda: reg.VariationalConv2d(1, 4, v)), "kernel_size", (0, True))
numbers("layer_sparsity", lambda v: (lambda: reg.layer_sparsity(linear(), threshold=v)), "threshold", (NAN, "3"))
numbers("sparsity", lambda v: (lambda: reg.sparsity(linear(), threshold=v)), "threshold", (NAN, True, "3"))
numbers("prune_variational", lambda v: (lambda: reg.prune_variational(linear(), threshold=v)), "threshold",
        (NAN, "3"))
bad("sparsity-model", lambda: reg.sparsity("model"), TypeError, "model")
bad("sparse_vd_kl-type", lambda: reg.sparse_vd_kl([0.0]), TypeError, "log_alpha")
bad("sparse_vd_kl-nan", lambda: reg.sparse_vd_kl(torch.tensor([NAN])), ValueError, "log_alpha")
numbers("mixup", lambda v: (lambda: reg.mixup(X4, Y4, alpha=v)), "alpha", (0, -1, NAN, INF, True))
numbers("cutmix", lambda v: (lambda: reg.cutmix(IMAGES, Y4[:4], alpha=v)), "alpha", (0, -1, NAN, INF))
bad("mixup-lengths", lambda: reg.mixup(X4, Y4[:3]), ValueError, "y")
bad("cutmix-lengths", lambda: reg.cutmix(IMAGES, Y4), ValueError, "y")
bad("cutmix-2d", lambda: reg.cutmix(X4, Y4), ValueError, "x")
bad("mixup-scalar-targets", lambda: reg.mixup(X4, torch.tensor(1.0)), ValueError, "y")
numbers("cutout", lambda v: (lambda: reg.cutout(IMAGES, size=v)), "size", (0, -1, True, 2.5))
numbers("cutout", lambda v: (lambda: reg.cutout(IMAGES, value=v)), "value", (NAN, INF, "0"))
bad("cutout-2d", lambda: reg.cutout(X4), ValueError, "x")
bad("swap_dropout-layer", lambda: reg.swap_dropout(nn.Sequential(nn.Dropout()), nn.Dropout(0.3)), TypeError,
    "factory")
bad("swap_dropout-model", lambda: reg.swap_dropout("model", lambda: nn.Dropout()), TypeError, "model")
bad("swap_dropout-returns", lambda: reg.swap_dropout(nn.Sequential(nn.Dropout()), lambda: 0.3), TypeError, "factory")
bad("replace_modules-kind", lambda: reg.replace_modules(nn.Sequential(nn.Dropout()), "Dropout", lambda m: m),
    TypeError, "kind")
bad("replace_modules-build", lambda: reg.replace_modules(nn.Sequential(nn.Dropout()), nn.Dropout, nn.Identity()),
    TypeError, "build")


def rcm(**kwargs):
    return lambda: reg.RegularizedClassifierModule(**({"backbone": linear(), "num_classes": 3} | kwargs))


numbers("RegularizedClassifierModule", lambda v: rcm(mixup_alpha=v), "mixup_alpha", (-1, NAN, INF, True))
numbers("RegularizedClassifierModule", lambda v: rcm(cutmix_alpha=v), "cutmix_alpha", (-1, NAN, INF))
numbers("RegularizedClassifierModule", lambda v: rcm(mix_prob=v), "mix_prob", (-0.1, 1.5, NAN))
numbers("RegularizedClassifierModule", lambda v: rcm(cutout_size=v), "cutout_size", (-1, True, 2.5))
numbers("RegularizedClassifierModule", lambda v: rcm(penalty_weight=v), "penalty_weight", (-1, NAN, INF))
numbers("RegularizedClassifierModule", lambda v: rcm(num_train=v), "num_train", (0, True, 2.5))

SIGNALS = torch.rand(4, 3, 10, generator=G)  # (members, batch, length)
bad("random_shift_1d-x-type", lambda: reg.random_shift_1d([0.0, 1.0], 1), TypeError, "x")
bad("random_shift_1d-x-1d", lambda: reg.random_shift_1d(torch.rand(10), 1), ValueError, "x")
bad("random_shift_1d-x-int", lambda: reg.random_shift_1d(torch.ones(3, 10, dtype=torch.long), 1), ValueError, "x")
bad("random_shift_1d-x-empty-length", lambda: reg.random_shift_1d(torch.ones(3, 0), 1), ValueError, "x")
numbers("random_shift_1d", lambda v: lambda: reg.random_shift_1d(X4, v), "max_shift", (-1, True, 1.5, None))
numbers("random_shift_1d", lambda v: lambda: reg.random_shift_1d(X4, 1, v), "noise_sd", (-0.1, NAN, INF, True))
bad("random_shift_1d-generator", lambda: reg.random_shift_1d(X4, 1, generator=0), TypeError, "generator")
numbers("RandomShift1d", lambda v: lambda: reg.RandomShift1d(v), "noise_per_shift", (-0.1, NAN, INF, True, "0.1"))
numbers("RandomShift1d.__call__", lambda v: lambda: reg.RandomShift1d()(X4, v, G), "strength", (-1.0, NAN, INF, True))
bad("RandomShift1d.batched-x-2d", lambda: reg.RandomShift1d().batched(X4, [1.0] * 8, [G] * 8), ValueError, "x")
bad("RandomShift1d.batched-strengths-length", lambda: reg.RandomShift1d().batched(SIGNALS, [1.0], [G] * 4),
    ValueError, "strengths")
bad("RandomShift1d.batched-strengths-nan", lambda: reg.RandomShift1d().batched(SIGNALS, [1.0, NAN, 1.0, 1.0], [G] * 4),
    ValueError, "strengths[1]")
bad("RandomShift1d.batched-generators-length", lambda: reg.RandomShift1d().batched(SIGNALS, [1.0] * 4, [G]),
    ValueError, "generators")
bad("RandomShift1d.batched-generators-type", lambda: reg.RandomShift1d().batched(SIGNALS, [1.0] * 4, [G, G, 0, G]),
    TypeError, "generators[2]")

# =================================================================================================
# calibration
# =================================================================================================
for name, fn in (("brier_score", cal.brier_score), ("negative_log_likelihood", cal.negative_log_likelihood),
                 ("adaptive_calibration_error", cal.adaptive_calibration_error),
                 ("classwise_calibration_error", cal.classwise_calibration_error),
                 ("reliability_bins", cal.reliability_bins)):
    bad(f"{name}-nan", lambda f=fn: f(nan_probs(), TARGETS), ValueError, "probs")
    bad(f"{name}-unnormalized", lambda f=fn: f(unnormalized(), TARGETS), ValueError, "probs")
    bad(f"{name}-targets-range", lambda f=fn: f(PROBS, out_of_range_targets()), ValueError, "targets")
    bad(f"{name}-targets-length", lambda f=fn: f(PROBS, TARGETS[:5]), ValueError, "targets")
    bad(f"{name}-targets-float", lambda f=fn: f(PROBS, TARGETS.float()), TypeError, "targets")
    bad(f"{name}-probs-1d", lambda f=fn: f(PROBS[:, 0], TARGETS), ValueError, "probs")
    bad(f"{name}-probs-array", lambda f=fn: f(PROBS.numpy(), TARGETS), TypeError, "probs")
for name, fn in (("adaptive_calibration_error", cal.adaptive_calibration_error),
                 ("classwise_calibration_error", cal.classwise_calibration_error),
                 ("reliability_bins", cal.reliability_bins)):
    numbers(name, lambda v, f=fn: (lambda: f(PROBS, TARGETS, n_bins=v)), "n_bins", (0, True, 2.5))
numbers("adaptive_calibration_error", lambda v: (lambda: cal.adaptive_calibration_error(PROBS, TARGETS, norm=v)),
        "norm", ("l3", None))
for name, cls in (("AdaptiveCalibrationError", cal.AdaptiveCalibrationError),
                  ("ReliabilityDiagram", cal.ReliabilityDiagram)):
    numbers(name, lambda v, c=cls: (lambda: c(n_bins=v)), "n_bins", (0, True, 2.5))
numbers("ClasswiseCalibrationError", lambda v: (lambda: cal.ClasswiseCalibrationError(num_classes=v)), "num_classes",
        (1, True))
bad("ClasswiseCalibrationError-update-classes", lambda: cal.ClasswiseCalibrationError(num_classes=5).update(
    PROBS, TARGETS), ValueError, "probs")
for name, cls in (("BrierScore", cal.BrierScore), ("NegativeLogLikelihood", cal.NegativeLogLikelihood),
                  ("AdaptiveCalibrationError", cal.AdaptiveCalibrationError),
                  ("ReliabilityDiagram", cal.ReliabilityDiagram)):
    bad(f"{name}-compute-before-update", lambda c=cls: c().compute(), RuntimeError, "update")
    bad(f"{name}-update-nan", lambda c=cls: c().update(nan_probs(), TARGETS), ValueError, "probs")
    bad(f"{name}-update-targets", lambda c=cls: c().update(PROBS, TARGETS[:4]), ValueError, "targets")
bad("ClasswiseCalibrationError-compute-before-update", lambda: cal.ClasswiseCalibrationError(3).compute(),
    RuntimeError, "update")
for name in ("temperature", "vector", "matrix", "histogram", "isotonic"):
    def make(n=name):
        cls = cal.CALIBRATORS[n]
        return cls(3) if n in ("vector", "matrix") else cls()
    bad(f"{name}-fit-probs", lambda m=make: m().fit(PROBS, TARGETS), ValueError, "logits")
    bad(f"{name}-fit-nan", lambda m=make: m().fit(torch.full((30, 3), NAN), TARGETS), ValueError, "logits")
    bad(f"{name}-fit-targets-range", lambda m=make: m().fit(LOGITS, out_of_range_targets()), ValueError, "targets")
    bad(f"{name}-fit-targets-length", lambda m=make: m().fit(LOGITS, TARGETS[:3]), ValueError, "targets")
    bad(f"{name}-fit-empty", lambda m=make: m().fit(LOGITS[:0], TARGETS[:0]), ValueError, "logits")
    if name in ("histogram", "isotonic"):  # the scaling methods start at the identity (documented)
        bad(f"{name}-predict-before-fit", lambda m=make: m().predict_proba(LOGITS), RuntimeError, "fit")
numbers("TemperatureScaling", lambda v: (lambda: cal.TemperatureScaling(temperature=v)), "temperature",
        (0, -1, NAN, INF, True))
numbers("TemperatureScaling", lambda v: (lambda: cal.TemperatureScaling(max_iter=v)), "max_iter", (0, True, 2.5))
for name, build in (("TemperatureScaling", lambda v: cal.TemperatureScaling(tol=v)),
                    ("VectorScaling", lambda v: cal.VectorScaling(3, tol=v)),
                    ("MatrixScaling", lambda v: cal.MatrixScaling(3, tol=v))):
    numbers(name, lambda v, b=build: (lambda: b(v)), "tol", (0, -1e-6, NAN, INF, True))
numbers("VectorScaling", lambda v: (lambda: cal.VectorScaling(3, max_iter=v)), "max_iter", (0, True, 2.5))
numbers("VectorScaling", lambda v: (lambda: cal.VectorScaling(num_classes=v)), "num_classes", (1, True))
numbers("MatrixScaling", lambda v: (lambda: cal.MatrixScaling(3, off_diagonal_l2=v)), "off_diagonal_l2",
        (-1, NAN, INF))
numbers("HistogramBinning", lambda v: (lambda: cal.HistogramBinning(n_bins=v)), "n_bins", (0, True))
bad("VectorScaling-fit-classes", lambda: cal.VectorScaling(5).fit(LOGITS, TARGETS), ValueError, "logits")
numbers("TemperatureScalingCallback", lambda v: (lambda: cal.TemperatureScalingCallback(max_iter=v)), "max_iter",
        (0, True, 2.5))
numbers("SplitConformal", lambda v: (lambda: cal.SplitConformal(alpha=v)), "alpha", (0, 1, -0.1, NAN, INF, True))
numbers("SplitConformal", lambda v: (lambda: cal.SplitConformal(method=v)), "method", ("naive", None))
numbers("SplitConformal", lambda v: (lambda: cal.SplitConformal(k_reg=v)), "k_reg", (-1, True, 2.5))
numbers("SplitConformal", lambda v: (lambda: cal.SplitConformal(lam=v)), "lam", (-1, NAN, INF))
bad("SplitConformal-randomized", lambda: cal.SplitConformal(randomized="no"), TypeError, "randomized")
bad("SplitConformal-class_conditional", lambda: cal.SplitConformal(class_conditional=1), TypeError,
    "class_conditional")
numbers("calibration_ci", lambda v: (lambda: cal.calibration_ci(PROBS, TARGETS, metric=v)), "metric", ("auroc", None))
numbers("calibration_ci", lambda v: (lambda: cal.calibration_ci(PROBS, TARGETS, n_bins=v)), "n_bins", (0, True, 2.5))
bad("SplitConformal-predict-before-fit", lambda: cal.SplitConformal().predict(PROBS), RuntimeError, "fit")
bad("SplitConformal-class-mismatch", lambda: cal.SplitConformal().fit(PROBS, TARGETS).predict(
    torch.softmax(torch.randn(4, 5), 1)), ValueError, "probs")
bad("SplitConformal-fit-nan", lambda: cal.SplitConformal().fit(nan_probs(), TARGETS), ValueError, "probs")
bad("SplitConformal-fit-targets", lambda: cal.SplitConformal().fit(PROBS, out_of_range_targets()), ValueError,
    "targets")
bad("SplitConformal-fit-empty", lambda: cal.SplitConformal().fit(PROBS[:0], TARGETS[:0]), ValueError, "probs")
bad("set_coverage-type", lambda: cal.set_coverage(PROBS, TARGETS), TypeError, "sets")
bad("set_coverage-length", lambda: cal.set_coverage(PROBS > 0.3, TARGETS[:4]), ValueError, "targets")
bad("set_coverage-targets-range", lambda: cal.set_coverage(PROBS > 0.3, out_of_range_targets()), ValueError,
    "targets")
bad("set_sizes-type", lambda: cal.set_sizes(PROBS), TypeError, "sets")
numbers("coverage_lower_bound", lambda v: (lambda: cal.coverage_lower_bound(v, 100, 100)), "alpha",
        (0, 1, NAN, True))
numbers("coverage_lower_bound", lambda v: (lambda: cal.coverage_lower_bound(0.1, v, 100)), "n_calibration",
        (0, True, 2.5))
numbers("coverage_lower_bound", lambda v: (lambda: cal.coverage_lower_bound(0.1, 100, v)), "n_test", (0, 2.5))
numbers("coverage_lower_bound", lambda v: (lambda: cal.coverage_lower_bound(0.1, 100, 100, delta=v)), "delta",
        (0, 1, NAN))
for name, fn in (("ood_score", cal.ood_score),):
    numbers(name, lambda v: (lambda: cal.ood_score(LOGITS, method=v)), "method", ("odin", None))
    numbers(name, lambda v: (lambda: cal.ood_score(LOGITS, temperature=v)), "temperature", (0, -1, NAN, INF, True))
    bad("ood_score-nan", lambda: cal.ood_score(torch.full((3, 3), NAN)), ValueError, "logits")
    bad("ood_score-probs", lambda: cal.ood_score(PROBS), ValueError, "logits")
    bad("ood_score-1d", lambda: cal.ood_score(LOGITS[0]), ValueError, "logits")
bad("ood_metrics-empty", lambda: cal.ood_metrics(torch.zeros(0), torch.zeros(3)), ValueError, "scores_in")
bad("ood_metrics-nan", lambda: cal.ood_metrics(torch.tensor([NAN, 1.0]), torch.zeros(3)), ValueError, "scores_in")
bad("ood_metrics-2d", lambda: cal.ood_metrics(torch.zeros(3, 2), torch.zeros(3)), ValueError, "scores_in")
bad("ood_metrics-type", lambda: cal.ood_metrics([1.0], torch.zeros(3)), TypeError, "scores_in")
bad("ood_evaluate-classes", lambda: cal.ood_evaluate(LOGITS, torch.randn(5, 4)), ValueError, "logits_out")
bad("ood_evaluate-methods", lambda: cal.ood_evaluate(LOGITS, LOGITS, methods=("odin",)), ValueError, "methods")
bad("ood_evaluate-methods-str", lambda: cal.ood_evaluate(LOGITS, LOGITS, methods="msp"), TypeError, "methods")
numbers("ood_evaluate", lambda v: (lambda: cal.ood_evaluate(LOGITS, LOGITS, temperature=v)), "temperature",
        (0, NAN, INF))
for name, fn in (("predictive_entropy", cal.predictive_entropy), ("expected_entropy", cal.expected_entropy),
                 ("mutual_information", cal.mutual_information)):
    bad(f"{name}-unnormalized", lambda f=fn: f(torch.ones(4, 5, 3)), ValueError, "probs")
    bad(f"{name}-nan", lambda f=fn: f(torch.full((4, 5, 3), NAN)), ValueError, "probs")
    bad(f"{name}-type", lambda f=fn: f(np.ones((4, 5, 3)) / 3), TypeError, "probs")
bad("expected_entropy-2d", lambda: cal.expected_entropy(PROBS), ValueError, "probs")
numbers("mc_dropout_predict", lambda v: (lambda: cal.mc_dropout_predict(linear(), X4, n_samples=v)), "n_samples",
        (0, True, 2.5))
bad("mc_dropout_predict-no-dropout", lambda: cal.mc_dropout_predict(linear(), X4), ValueError, "model")
bad("mc_dropout_predict-model", lambda: cal.mc_dropout_predict("model", X4), TypeError, "model")
bad("ensemble_predict-empty", lambda: cal.ensemble_predict([], X4), ValueError, "models")
bad("ensemble_predict-type", lambda: cal.ensemble_predict(["a"], X4), TypeError, "models")
for name, fn in (("aurc", cal.aurc), ("excess_aurc", cal.excess_aurc), ("risk_coverage_curve",
                                                                         cal.risk_coverage_curve)):
    bad(f"{name}-lengths", lambda f=fn: f(torch.rand(5), torch.ones(4, dtype=torch.bool)), ValueError, "correct")
    bad(f"{name}-empty", lambda f=fn: f(torch.rand(0), torch.ones(0, dtype=torch.bool)), ValueError, "confidences")
    bad(f"{name}-nan", lambda f=fn: f(torch.tensor([NAN, 0.5]), torch.ones(2, dtype=torch.bool)), ValueError,
        "confidences")
    bad(f"{name}-correct-float", lambda f=fn: f(torch.rand(3), torch.rand(3)), TypeError, "correct")

# =================================================================================================
# cost
# =================================================================================================
numbers("CostAssumptions", lambda v: (lambda: cost.CostAssumptions(power_watts=v)), "power_watts",
        (-1, NAN, INF, True))
numbers("CostAssumptions", lambda v: (lambda: cost.CostAssumptions(price_per_hour=v)), "price_per_hour",
        (-1, NAN, INF))
numbers("CostMeter", lambda v: (lambda: cost.CostMeter(window_size=v)), "window_size", (0, True, 2.5))
bad("CostMeter-assumptions", lambda: cost.CostMeter(assumptions={"power_watts": 3}), TypeError, "assumptions")
bad("CostMeter-batch_size_fn", lambda: cost.CostMeter(batch_size_fn=3), TypeError, "batch_size_fn")
numbers("DistillationModule", lambda v: (lambda: cost.DistillationModule(linear(), linear(), 3, temperature=v)),
        "temperature", (0, -1, NAN, INF, True))
numbers("DistillationModule", lambda v: (lambda: cost.DistillationModule(linear(), linear(), 3, alpha=v)), "alpha",
        (-0.1, 1.5, NAN))
bad("DistillationModule-teacher", lambda: cost.DistillationModule(linear(), lambda: linear(), 3), TypeError,
    "teacher")
numbers("distillation_loss", lambda v: (lambda: cost.distillation_loss(LOGITS, LOGITS, TARGETS, temperature=v)),
        "temperature", (0, NAN, INF))
numbers("distillation_loss", lambda v: (lambda: cost.distillation_loss(LOGITS, LOGITS, TARGETS, alpha=v)), "alpha",
        (-0.1, 1.5, NAN))
bad("distillation_loss-shapes", lambda: cost.distillation_loss(LOGITS, LOGITS[:, :2]), ValueError, "teacher_logits")
bad("distillation_loss-targets", lambda: cost.distillation_loss(LOGITS, LOGITS, TARGETS[:3]), ValueError, "targets")
bad("distillation_loss-targets-range", lambda: cost.distillation_loss(LOGITS, LOGITS, out_of_range_targets()),
    ValueError, "targets")
bad("LowPrecision-dtype", lambda: cost.LowPrecision(linear(), dtype=torch.int8), ValueError, "dtype")
bad("LowPrecision-model", lambda: cost.LowPrecision("m"), TypeError, "model")
numbers("PruneOnce", lambda v: (lambda: cost.PruneOnce(v)), "sparsity", (-0.1, 1.0, NAN, True))
numbers("PruneOnce", lambda v: (lambda: cost.PruneOnce(0.5, at_epoch=v)), "at_epoch", (-1, True, 2.5))
numbers("pruning_callback", lambda v: (lambda: cost.pruning_callback(v)), "sparsity", (1.5, NAN))
numbers("prune_model", lambda v: (lambda: cost.prune_model(linear(), v)), "sparsity", (-0.1, 1.0, NAN, INF, True))
bad("prune_model-model", lambda: cost.prune_model("m", 0.5), TypeError, "model")
bad("prune_model-nothing", lambda: cost.prune_model(nn.ReLU(), 0.5), ValueError, "model")
bad("prunable_weights-model", lambda: cost.prunable_weights(3), TypeError, "model")
numbers("quantize_int8", lambda v: (lambda: cost.quantize_int8(linear(), backend=v)), "backend", ("fbgemm", None))
bad("quantize_int8-layer_types", lambda: cost.quantize_int8(linear(), layer_types=("Linear",)), BAD_TYPE,
    "layer_types")
numbers("break_even_predictions", lambda v: (lambda: cost.break_even_predictions(v, 1.0, 2.0, 0.5)), "train_cost_a",
        (NAN, INF, -1, True))
numbers("break_even_predictions", lambda v: (lambda: cost.break_even_predictions(1.0, v, 2.0, 0.5)),
        "cost_per_prediction_a", (NAN, -1))
bad("cost_table-empty", lambda: cost.cost_table({}, [10]), BAD_TYPE, "options")
bad("cost_table-n", lambda: cost.cost_table({"a": (1.0, 0.1)}, [-1]), ValueError, "n_predictions")
bad("cost_table-pair", lambda: cost.cost_table({"a": 1.0}, [10]), BAD_TYPE, "options")
bad("cost_table-nan", lambda: cost.cost_table({"a": (NAN, 0.1)}, [10]), ValueError, "options")
for name, fn in (("count_flops", cost.count_flops), ("activation_memory_bytes", cost.activation_memory_bytes),
                 ("profile_model", cost.profile_model)):
    bad(f"{name}-model", lambda f=fn: f("m", X4), TypeError, "model")
    bad(f"{name}-example", lambda f=fn: f(linear(), X4.numpy()), TypeError, "example")
    bad(f"{name}-example-shape", lambda f=fn: f(linear(), torch.zeros(2, 5)), ValueError, "example")
for name, fn in (("measure_latency", cost.measure_latency),):
    numbers(name, lambda v: (lambda: cost.measure_latency(linear(), X4, batch_sizes=v)), "batch_sizes",
            ((), (0,), (1.5,), (True,), "4"))
    numbers(name, lambda v: (lambda: cost.measure_latency(linear(), X4, warmup=v)), "warmup", (-1, True))
    numbers(name, lambda v: (lambda: cost.measure_latency(linear(), X4, repeats=v)), "repeats", (0, True, 2.5))
bad("compare_latency-empty", lambda: cost.compare_latency({}, X4), BAD_TYPE, "models")
bad("compare_latency-type", lambda: cost.compare_latency({"a": "m"}, X4), TypeError, "model")
bad("compare_latency-inputs", lambda: cost.compare_latency({"a": linear()}, X4, inputs={"b": lambda x: x}),
    ValueError, "inputs")
numbers("time_phases", lambda v: (lambda: cost.time_phases(linear(), X4, Y4, repeats=v)), "repeats", (0, True))
bad("time_phases-targets", lambda: cost.time_phases(linear(), X4, Y4[:3]), ValueError, "targets")
bad("count_parameters-model", lambda: cost.count_parameters([]), TypeError, "model")
bad("count_parameters-flag", lambda: cost.count_parameters(linear(), trainable_only="yes"), TypeError,
    "trainable_only")
bad("model_size_bytes-model", lambda: cost.model_size_bytes({}), TypeError, "model")
bad("weight_sparsity-model", lambda: cost.weight_sparsity(3), TypeError, "model")
bad("compile_model-model", lambda: cost.compile_model("m"), TypeError, "model")
bad("training_memory-model", lambda: cost.training_memory("m", torch.optim.SGD, X4), TypeError, "model")
bad("training_memory-optimizer", lambda: cost.training_memory(linear(), "adamw", X4), TypeError, "optimizer")
bad("training_memory-optimizer-built", lambda: cost.training_memory(linear(), lambda params: 3, X4), TypeError,
    "optimizer")
bad("training_memory-optimizer-foreign", lambda: cost.training_memory(
    linear(), torch.optim.SGD(linear().parameters()), X4), ValueError, "optimizer")
bad("training_memory-example", lambda: cost.training_memory(linear(), torch.optim.SGD, X4.numpy()), TypeError,
    "example")
bad("training_memory-example-shape", lambda: cost.training_memory(linear(), torch.optim.SGD, torch.zeros(2, 5)),
    ValueError, "example")
bad("training_memory-frozen", lambda: cost.training_memory(linear().requires_grad_(False), torch.optim.SGD, X4),
    ValueError, "model")
bad("training_memory-logits_fn", lambda: cost.training_memory(linear(), torch.optim.SGD, X4, logits_fn=3),
    TypeError, "logits_fn")

# =================================================================================================
# security
# =================================================================================================
for name, fn in (("pgd", security.pgd), ("fgsm", security.fgsm)):
    numbers(name, lambda v, f=fn: (lambda: f(linear(), X4, Y4, v)), "epsilon", (-0.1, NAN, INF, True, "0.1"))
    numbers(name, lambda v, f=fn: (lambda: f(linear(), X4, Y4, 0.1, norm=v)), "norm", ("l1", None))
    numbers(name, lambda v, f=fn: (lambda: f(linear(), X4, Y4, 0.1, step_size=v)), "step_size", (0, -1, NAN, INF))
    numbers(name, lambda v, f=fn: (lambda: f(linear(), X4, Y4, 0.1, input_range=v)), "input_range",
            ((1.0, 0.0), (0.0,), (NAN, 1.0), (0.0, INF), "01"))
    bad(f"{name}-targets-length", lambda f=fn: f(linear(), X4, Y4[:3], 0.1), ValueError, "targets")
    bad(f"{name}-targets-range", lambda f=fn: f(linear(), X4, torch.full((8,), 5), 0.1), ValueError, "targets")
    bad(f"{name}-targets-float", lambda f=fn: f(linear(), X4, Y4.float(), 0.1), TypeError, "targets")
    bad(f"{name}-inputs-range", lambda f=fn: f(linear(), X4 * 5, Y4, 0.1, input_range=(0.0, 1.0)), ValueError, "inputs")
    bad(f"{name}-inputs-nan", lambda f=fn: f(linear(), torch.full((8, 4), NAN), Y4, 0.1), ValueError, "inputs")
    bad(f"{name}-model", lambda f=fn: f("m", X4, Y4, 0.1), TypeError, "model")
numbers("pgd", lambda v: (lambda: security.pgd(linear(), X4, Y4, 0.1, steps=v)), "steps", (0, True, 2.5))
numbers("pgd", lambda v: (lambda: security.pgd(linear(), X4, Y4, 0.1, restarts=v)), "restarts", (0, True, 2.5))
numbers("pgd", lambda v: (lambda: security.pgd(linear(), X4, Y4, 0.1, loss=v)), "loss", ("cw", None))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, v)), "epsilon", (-0.1, NAN, True))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, 0.1, steps=v)), "steps", (0, True))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, 0.1, restarts=v)), "restarts", (0, 1.5))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, 0.1, loss=v)), "loss", ("cw", None))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, 0.1, rho=v)), "rho", (0, 1.5, NAN, True))
numbers("apgd", lambda v: (lambda: security.apgd(linear(), X4, Y4, 0.1, momentum=v)), "momentum", (0, -1, 2))
bad("apgd-loss_fn-scalar", lambda: security.apgd(linear(), X4, Y4, 0.1, loss_fn=torch.nn.functional.cross_entropy),
    ValueError, "loss_fn")
numbers("robust_accuracy", lambda v: (lambda: security.robust_accuracy(linear(), (X4, Y4), epsilons=v)), "epsilons",
        ((), (-0.1,), (NAN,), 0.1), BAD_TYPE)
bad("robust_accuracy-data", lambda: security.robust_accuracy(linear(), X4), TypeError, "data")


def acm(**kwargs):
    return lambda: security.AdversarialClassifierModule(**({"backbone": linear(), "num_classes": 3,
                                                             "epsilon": 0.1} | kwargs))


numbers("AdversarialClassifierModule", lambda v: acm(epsilon=v), "epsilon", (-0.1, NAN, INF, True))
numbers("AdversarialClassifierModule", lambda v: acm(attack=v), "attack", ("cw", None))
numbers("AdversarialClassifierModule", lambda v: acm(attack_steps=v), "attack_steps", (0, True))
numbers("AdversarialClassifierModule", lambda v: acm(clean_weight=v), "clean_weight", (-0.1, 1.5, NAN))
numbers("RobustAccuracyCallback", lambda v: (lambda: security.RobustAccuracyCallback(epsilon=v)), "epsilon",
        (-0.1, NAN, INF))
numbers("RobustAccuracyCallback", lambda v: (lambda: security.RobustAccuracyCallback(0.1, every_n_epochs=v)),
        "every_n_epochs", (0, True))
numbers("RobustAccuracyCallback", lambda v: (lambda: security.RobustAccuracyCallback(0.1, num_samples=v)),
        "num_samples", (0, True))
numbers("RobustAccuracyCallback", lambda v: (lambda: security.RobustAccuracyCallback(0.1, attack=v)), "attack",
        ("cw", None))
numbers("add_trigger", lambda v: (lambda: security.add_trigger(IMAGES, patch_size=v)), "patch_size",
        (0, 9, True))
numbers("add_trigger", lambda v: (lambda: security.add_trigger(IMAGES, value=v)), "value", (NAN, INF, 1.5))
numbers("add_trigger", lambda v: (lambda: security.add_trigger(IMAGES, corner=v)), "corner", ("middle", None))
bad("add_trigger-2d", lambda: security.add_trigger(X4), ValueError, "images01")
numbers("flip_labels", lambda v: (lambda: security.flip_labels(Y4, v, 3)), "rate", (-0.1, 1.5, NAN, True))
numbers("flip_labels", lambda v: (lambda: security.flip_labels(Y4, 0.5, v)), "num_classes", (1, True, 2))
bad("flip_labels-float", lambda: security.flip_labels(Y4.float(), 0.5, 3), TypeError, "targets")
numbers("attack_success_rate", lambda v: (lambda: security.attack_success_rate(linear(), X4, v)), "target_label",
        (-1, 3, True, 1.5))
bad("attack_success_rate-true-length", lambda: security.attack_success_rate(linear(), X4, 0, Y4[:3]), ValueError,
    "true_labels")
numbers("spectral_signatures", lambda v: (lambda: security.spectral_signatures(X4, Y4, v)), "poison_rate",
        (-0.1, 1.5, NAN, True))
numbers("spectral_signatures", lambda v: (lambda: security.spectral_signatures(X4, Y4, 0.1, removal_factor=v)),
        "removal_factor", (0, NAN, INF))
bad("spectral_signatures-lengths", lambda: security.spectral_signatures(X4, Y4[:3], 0.1), ValueError, "labels")
bad("spectral_signatures-1d", lambda: security.spectral_signatures(X4[:, 0], Y4, 0.1), BAD_TYPE, "features")
bad("penultimate_activations-layer", lambda: security.penultimate_activations(linear(), X4, layer="fc"), TypeError,
    "layer")
SEQ = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3))
numbers("penultimate_activations", lambda v: (lambda: security.penultimate_activations(SEQ, X4, layer=SEQ[2],
                                                                                      batch_size=v)),
        "batch_size", (0, True))
numbers("per_sample_loss", lambda v: (lambda: security.per_sample_loss(linear(), X4, Y4, batch_size=v)),
        "batch_size", (0, True, 2.5))
bad("per_sample_loss-lengths", lambda: security.per_sample_loss(linear(), X4, Y4[:3]), ValueError, "targets")
bad("per_sample_loss-range", lambda: security.per_sample_loss(linear(), X4, torch.full((8,), 5)), ValueError,
    "targets")
bad("membership_auc-empty", lambda: security.membership_auc(torch.zeros(0), torch.rand(3)), ValueError,
    "member_losses")
bad("membership_auc-nan", lambda: security.membership_auc(torch.tensor([NAN]), torch.rand(3)), ValueError,
    "member_losses")
bad("membership_auc-type", lambda: security.membership_auc([0.1], torch.rand(3)), BAD_TYPE, "member_losses")
bad("membership_inference-pairs", lambda: security.membership_inference(linear(), X4, (X4, Y4)), TypeError,
    "members")
numbers("DPClassifierModule", lambda v: (lambda: security.DPClassifierModule(linear(), 3, noise_multiplier=v)),
        "noise_multiplier", (-1, NAN, INF, True))
numbers("DPClassifierModule", lambda v: (lambda: security.DPClassifierModule(linear(), 3, max_grad_norm=v)),
        "max_grad_norm", (0, NAN, INF))
numbers("DPClassifierModule", lambda v: (lambda: security.DPClassifierModule(linear(), 3, delta=v)), "delta",
        (0, 1, NAN))
numbers("PoissonBatchLoader", lambda v: (lambda: security.PoissonBatchLoader(X4, Y4, sample_rate=v)), "sample_rate",
        (0, 1.5, NAN, True))
numbers("PoissonBatchLoader", lambda v: (lambda: security.PoissonBatchLoader(X4, Y4, sample_rate=0.5,
                                                                             num_batches=v)), "num_batches",
        (0, True))
bad("PoissonBatchLoader-lengths", lambda: security.PoissonBatchLoader(X4, Y4[:3], sample_rate=0.5), BAD_TYPE,
    "tensors")
bad("PoissonSampledDataModule-base", lambda: security.PoissonSampledDataModule(
    data.TensorBatchLoader(X4, batch_size=2)), TypeError, "base")


def poisoned(**kwargs):
    return lambda: security.PoisonedDataModule(**({"base": data.DigitsDataModule()} | kwargs))


bad("PoisonedDataModule-base", poisoned(base=torch.utils.data.DataLoader(torch.zeros(3))), TypeError, "base")
numbers("PoisonedDataModule", lambda v: poisoned(poison=v), "poison", ("trojan", None))
numbers("PoisonedDataModule", lambda v: poisoned(poison_rate=v), "poison_rate", (-0.1, 1.5, NAN, True))
numbers("PoisonedDataModule", lambda v: poisoned(target_label=v), "target_label", (-1, 10, True))
numbers("PoisonedDataModule", lambda v: poisoned(patch_size=v), "patch_size", (0, True))
numbers("PoisonedDataModule", lambda v: poisoned(corner=v), "corner", ("centre",))
numbers("safe_load", lambda v: (lambda: security.safe_load("/nonexistent/file.pt", expected_sha256=v)), "path",
        (None,), FileNotFoundError)
bad("safe_load-type", lambda: security.safe_load(3), TypeError, "path")
bad("safe_load-missing", lambda: security.safe_load("/nonexistent/file.pt"), FileNotFoundError, "path")
bad("sha256_file-missing", lambda: security.sha256_file("/nonexistent/file.pt"), FileNotFoundError, "path")
bad("sha256_file-type", lambda: security.sha256_file(3), TypeError, "path")
bad("Sha256CheckpointIO-flag", lambda: security.Sha256CheckpointIO(require_sha256="yes"), TypeError,
    "require_sha256")
bad("Sha256CheckpointIO-missing", lambda: security.Sha256CheckpointIO().load_checkpoint("/nonexistent.ckpt"),
    FileNotFoundError, "checkpoint")
bad("Sha256CheckpointIO-namespace", lambda: security.Sha256CheckpointIO.for_namespace(torch), ValueError, "namespace")
bad("verify_sidecar-missing", lambda: security.verify_sidecar("/nonexistent.ckpt"), FileNotFoundError, "path")
bad("write_sidecar-missing", lambda: security.write_sidecar("/nonexistent.ckpt"), FileNotFoundError, "path")

# =================================================================================================
# governance
# =================================================================================================
LAB = np.array([0, 1, 2] * 10)
OOF = np.full((30, 3), 1 / 3)
numbers("inject_label_noise", lambda v: (lambda: governance.inject_label_noise(LAB, v)), "rate",
        (-0.1, 1.5, NAN, INF, True, "0.1"))
numbers("inject_label_noise", lambda v: (lambda: governance.inject_label_noise(LAB, 0.1, num_classes=v)),
        "num_classes", (1, 2, True, 2.5))
bad("inject_label_noise-float", lambda: governance.inject_label_noise(LAB + 0.5, 0.1), TypeError, "labels")
bad("inject_label_noise-negative", lambda: governance.inject_label_noise(LAB - 1, 0.1), ValueError, "labels")
bad("find_label_issues-nan", lambda: governance.find_label_issues(LAB, np.where(np.eye(3)[LAB] > 0, NAN, 0.5)),
    ValueError, "probs")
bad("find_label_issues-unnormalized", lambda: governance.find_label_issues(LAB, np.ones((30, 3))), ValueError,
    "probs")
bad("find_label_issues-shape", lambda: governance.find_label_issues(LAB, OOF[:5]), ValueError, "probs")
bad("find_label_issues-labels", lambda: governance.find_label_issues(LAB + 3, OOF), ValueError, "labels")
numbers("find_label_issues", lambda v: (lambda: governance.find_label_issues(LAB, OOF, filter_by=v)), "filter_by",
        ("all", None))
bad("out_of_fold_probs-lengths", lambda: governance.out_of_fold_probs(np.zeros((30, 2)), LAB[:20]), ValueError,
    "labels")
numbers("out_of_fold_probs", lambda v: (lambda: governance.out_of_fold_probs(np.zeros((30, 2)), LAB, n_splits=v)),
        "n_splits", (1, True, 2.5))
bad("out_of_fold_probs-nan", lambda: governance.out_of_fold_probs(np.full((30, 2), NAN), LAB), ValueError, "x")
bad("out_of_fold_probs-module", lambda: governance.out_of_fold_probs(np.zeros((30, 2)), LAB, module=3), TypeError,
    "module")
numbers("out_of_fold_probs", lambda v: (lambda: governance.out_of_fold_probs(
    np.zeros((30, 2)), LAB, module=lambda: None, max_epochs=v)), "max_epochs", (0, True, 2.5, NAN))
numbers("out_of_fold_probs", lambda v: (lambda: governance.out_of_fold_probs(
    np.zeros((30, 2)), LAB, module=lambda: None, batch_size=v)), "batch_size", (0, True, 2.5, INF))
bad("dataset_card-unknown-field", lambda: governance.dataset_card(data.MoonsDataModule(), info={"limits": "x"}),
    ValueError, "unknown fields")
bad("detection_scores-dtype", lambda: governance.detection_scores(np.zeros(3), np.zeros(3, bool)), TypeError, "found")
bad("detection_scores-shape", lambda: governance.detection_scores(np.zeros(3, bool), np.zeros(4, bool)), ValueError,
    "truth")
bad("slice_metrics-nan", lambda: governance.slice_metrics(nan_probs(), TARGETS), ValueError, "probs")
bad("slice_metrics-unnormalized", lambda: governance.slice_metrics(unnormalized(), TARGETS), ValueError, "probs")
bad("slice_metrics-targets-range", lambda: governance.slice_metrics(PROBS, out_of_range_targets()), ValueError,
    "targets")
bad("slice_metrics-targets-length", lambda: governance.slice_metrics(PROBS, TARGETS[:4]), TypeError, "targets")
bad("slice_metrics-groups", lambda: governance.slice_metrics(PROBS, TARGETS, groups=np.zeros(4)), ValueError,
    "groups")
numbers("slice_metrics", lambda v: (lambda: governance.slice_metrics(PROBS, TARGETS, n_bins=v)), "n_bins", (0, True))
numbers("slice_metrics", lambda v: (lambda: governance.slice_metrics(PROBS, TARGETS, min_size=v)), "min_size",
        (0, True, 2.5))
bad("worst_slice-metric", lambda: governance.worst_slice(governance.slice_metrics(PROBS, TARGETS), metric="f1"),
    ValueError, "metric")
bad("worst_slice-frame", lambda: governance.worst_slice(pd.DataFrame({"a": [1]})), ValueError, "frame")
numbers("find_duplicates", lambda v: (lambda: governance.find_duplicates(X4.numpy(), threshold=v)), "threshold",
        (-1, NAN, -INF, True))  # +inf is allowed: every pair with its distance (notebook 06)
bad("find_duplicates-1d", lambda: governance.find_duplicates(np.zeros(3)), ValueError, "x")
bad("find_duplicates-nan", lambda: governance.find_duplicates(np.full((3, 2), NAN)), ValueError, "x")
bad("find_leakage-features", lambda: governance.find_leakage(np.zeros((3, 2)), np.zeros((3, 4))), ValueError,
    "x_test")
numbers("find_leakage", lambda v: (lambda: governance.find_leakage(np.zeros((3, 2)), np.zeros((3, 2)),
                                                                     threshold=v)), "threshold", (-1, NAN, -INF))
bad("split_leakage-type", lambda: governance.split_leakage(X4), TypeError, "datamodule")
bad("verify_splits-type", lambda: governance.verify_splits(X4), TypeError, "datamodule")
bad("dataset_card-type", lambda: governance.dataset_card(X4), TypeError, "datamodule")
bad("dataset_card-info", lambda: governance.dataset_card(data.MoonsDataModule(), info=[]), TypeError, "info")

# =================================================================================================
# monitoring
# =================================================================================================
bad("GateRule-higher-str", lambda: monitoring.GateRule("ece", higher_is_better="False"), TypeError,
    "higher_is_better")
bad("GateRule-higher-int", lambda: monitoring.GateRule("ece", higher_is_better=0), TypeError, "higher_is_better")
bad("GateRule-relative-str", lambda: monitoring.GateRule("ece", False, relative="yes"), TypeError, "relative")
numbers("GateRule", lambda v: (lambda: monitoring.GateRule("ece", False, tolerance=v)), "tolerance",
        (-0.1, NAN, INF, True, "0.1"))
numbers("GateRule", lambda v: (lambda: monitoring.GateRule(v, False)), "metric", ("", None, 3), BAD_TYPE)
GOOD = {"accuracy": 0.9, "ece": 0.05, "nll": 0.3}
bad("regression_gate-candidate", lambda: monitoring.regression_gate([0.9], GOOD), TypeError, "candidate")
bad("regression_gate-missing", lambda: monitoring.regression_gate({"accuracy": 0.9}, GOOD), ValueError, "candidate")
bad("regression_gate-nan", lambda: monitoring.regression_gate(GOOD | {"ece": NAN}, GOOD), ValueError, "candidate")
bad("regression_gate-inf", lambda: monitoring.regression_gate(GOOD, GOOD | {"accuracy": INF}), ValueError,
    "production")
bad("regression_gate-rules-empty", lambda: monitoring.regression_gate(GOOD, GOOD, rules=()), TypeError, "rules")
bad("regression_gate-rules-type", lambda: monitoring.regression_gate(GOOD, GOOD, rules=("accuracy",)), TypeError,
    "rules")
REF = np.random.default_rng(0).normal(size=(50, 2))
numbers("input_drift", lambda v: (lambda: monitoring.input_drift(REF, REF, alpha=v)), "alpha",
        (0, 1, NAN, INF, True))
numbers("input_drift", lambda v: (lambda: monitoring.input_drift(REF, REF, method=v)), "method", ("chi2", None))
numbers("input_drift", lambda v: (lambda: monitoring.input_drift(REF, REF, psi_threshold=v)), "psi_threshold",
        (-1, NAN, INF))
numbers("input_drift", lambda v: (lambda: monitoring.input_drift(REF, REF, n_bins=v)), "n_bins", (1, True, 2.5))
bad("input_drift-features", lambda: monitoring.input_drift(REF, REF[:, :1]), ValueError, "live")
bad("input_drift-nan", lambda: monitoring.input_drift(REF, np.full((5, 2), NAN)), ValueError, "live")
bad("input_drift-empty", lambda: monitoring.input_drift(REF, REF[:0]), ValueError, "live")
P2 = torch.softmax(torch.randn(40, 3, generator=G), 1).numpy()
numbers("output_drift", lambda v: (lambda: monitoring.output_drift(P2, P2, alpha=v)), "alpha", (0, 1, NAN))
numbers("output_drift", lambda v: (lambda: monitoring.output_drift(P2, P2, statistic=v)), "statistic",
        ("median", None))
numbers("output_drift", lambda v: (lambda: monitoring.output_drift(P2, P2, n_permutations=v)), "n_permutations",
        (0, True, 2.5))
bad("output_drift-unnormalized", lambda: monitoring.output_drift(P2, P2 * 2), ValueError, "live_probs")
bad("output_drift-classes", lambda: monitoring.output_drift(P2, P2[:, :2] / P2[:, :2].sum(1, keepdims=True)),
    ValueError, "live_probs")
bad("output_drift-nan", lambda: monitoring.output_drift(np.full((4, 3), NAN), P2), ValueError, "reference_probs")
numbers("psi", lambda v: (lambda: monitoring.psi(REF, REF, n_bins=v)), "n_bins", (1, 0, True))
bad("psi-nan", lambda: monitoring.psi(np.full((5, 2), NAN), REF), ValueError, "reference")
bad("ModelRegistry-root", lambda: monitoring.ModelRegistry(3), TypeError, "root")


def registry(tmp="/tmp"):
    return monitoring.ModelRegistry(Path(tmp) / "toolkit-bad-inputs-registry")


bad("ModelRegistry-load-model", lambda: registry().load("m"), TypeError, "model")
bad("ModelRegistry-load-version", lambda: registry().load(linear(), version="v999"), ValueError, "version")
bad("ModelRegistry-promote-version", lambda: registry().promote("v999"), ValueError, "version")
bad("ModelRegistry-verify-version", lambda: registry().verify("nope"), ValueError, "version")

# =================================================================================================
# report and plots
# =================================================================================================
bad("card_markdown-frame", lambda: report.card_markdown({"a": 1}), TypeError, "frame")
bad("card_html-frame", lambda: report.card_html([1]), TypeError, "frame")
bad("card_markdown-empty", lambda: report.card_markdown(pd.DataFrame()), ValueError, "frame")
bad("summarize_card-frame", lambda: report.summarize_card("x"), TypeError, "frame")
bad("plot_dashboard-metrics", lambda: report.plot_dashboard(pd.DataFrame({"model": ["a"], "accuracy": [0.9]}),
                                                            metrics=("f1",)),
    ValueError, "metrics")
bad("plot_dashboard-frame", lambda: report.plot_dashboard([]), TypeError, "frame")
bad("report_card-models", lambda: report.report_card({}, data.DigitsDataModule()), BAD_TYPE, "models")
bad("report_card-models-type", lambda: report.report_card([linear()], data.DigitsDataModule()), TypeError, "models")
bad("report_card-model-value", lambda: report.report_card({"a": "m"}, data.DigitsDataModule()), TypeError, "model")
bad("evaluate_model-model", lambda: report.evaluate_model("m", data.DigitsDataModule()), TypeError, "model")
bad("evaluate_model-datamodule", lambda: report.evaluate_model(linear(), X4), TypeError, "datamodule")
numbers("evaluate_model", lambda v: (lambda: report.evaluate_model(linear(), data.DigitsDataModule(),
                                                                  latency_repeats=v)), "latency_repeats", (0, 2.5, True))
bad("report_card-unknown-kwarg", lambda: report.report_card({"a": linear()}, data.DigitsDataModule(), sevrity=3),
    TypeError, "sevrity")
bad("gate_rules-frame", lambda: report.gate_rules([1]), TypeError, "frame")
bad("gate_rules-rules", lambda: report.gate_rules(pd.DataFrame({"model": ["a"]}), rules=["latency"]), TypeError,
    "rules")
numbers("evaluate_model", lambda v: (lambda: report.evaluate_model(linear(), data.DigitsDataModule(), severity=v)),
        "severity", (0, 6, True))
numbers("evaluate_model", lambda v: (lambda: report.evaluate_model(linear(), data.DigitsDataModule(), epsilon=v)),
        "epsilon", (-0.1, NAN, INF))
numbers("evaluate_model", lambda v: (lambda: report.evaluate_model(linear(), data.DigitsDataModule(),
                                                                   corruptions=v)), "corruptions", (("fog",), "rotation"), BAD_TYPE)
numbers("evaluate_model", lambda v: (lambda: report.evaluate_model(linear(), data.DigitsDataModule(), n_bins=v)),
        "n_bins", (0, True))

from toolkit import plots  # noqa: E402

bad("plot_confusion_matrix-normalize", lambda: plots.plot_confusion_matrix(TARGETS, TARGETS, 3, normalize="rows"),
    ValueError, "normalize")
bad("plot_confusion_matrix-range", lambda: plots.plot_confusion_matrix(TARGETS, out_of_range_targets(), 3),
    ValueError, "targets")
bad("plot_confusion_matrix-lengths", lambda: plots.plot_confusion_matrix(TARGETS, TARGETS[:3], 3), ValueError,
    "targets")
bad("plot_learning_curves-metric", lambda: plots.plot_learning_curves(pd.DataFrame({"epoch": [0]}), metric="f1"),
    ValueError, "metric")
bad("plot_seed_distribution-metric", lambda: plots.plot_seed_distribution(pd.DataFrame({"a": [1]}), "b"),
    ValueError, "metric")
bad("plot_image_grid-ncols", lambda: plots.plot_image_grid(IMAGES, ncols=0), ValueError, "ncols")
bad("plot_image_grid-labels", lambda: plots.plot_image_grid(IMAGES, labels=[1]), ValueError, "labels")
bad("set_theme-context", lambda: plots.set_theme("huge"), ValueError, "context")
bad("plot_class_balance-targets", lambda: plots.plot_class_balance([1, 2]), TypeError, "targets")


# =================================================================================================
def _raised_in_toolkit(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(TOOLKIT_DIR)


def test_the_table_is_wide_enough():
    assert len(ROWS) >= 300
    packages = {row.id.split("-")[0] for row in ROWS}
    assert len(packages) >= 150  # distinct public functions, classes and methods


@pytest.mark.parametrize(("thunk", "exc", "arg"), ROWS)
def test_bad_input_is_refused_clearly(thunk, exc, arg):
    with pytest.raises(exc) as info:
        thunk()
    message = str(info.value)
    assert arg.lower() in message.lower(), f"the message does not name {arg!r}: {message!r}"
    assert _raised_in_toolkit(info.value), (
        f"raised from inside a dependency, not at the toolkit's boundary: "
        f"{traceback.extract_tb(info.value.__traceback__)[-1].filename}: {message!r}")
    assert "weights_only=False" not in message


def test_a_nan_never_passes_a_range_check_silently():
    """The issue's silent cases, each asserted once more by name: refused, not returned as a number."""
    assert math.isnan(NAN)
    for thunk in (lambda: data.corrupt(torch.full((1, 1, 8, 8), NAN), "contrast", 3),
                  lambda: security.pgd(linear(), torch.full((8, 4), NAN), Y4, 0.1),
                  lambda: governance.slice_metrics(nan_probs(), TARGETS)):
        with pytest.raises(ValueError):
            thunk()


def test_a_bad_label_in_a_later_batch_is_refused_by_classifier_module(tmp_path):
    """Labels are checked in every batch, not just the first: a bad label in the third batch gets the
    toolkit's message, not torch's "Target 7 is out of bounds" from inside cross_entropy."""
    x = torch.randn(48, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (48,), generator=torch.Generator().manual_seed(1))
    y[40] = 7  # in the third batch of 16
    loader = data.TensorBatchLoader(x, y, batch_size=16)
    module = training.ClassifierModule(linear(), num_classes=3)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 3\).*train batch"):
        trainer.fit(module, loader)
    assert trainer.global_step == 2  # the first two batches trained
