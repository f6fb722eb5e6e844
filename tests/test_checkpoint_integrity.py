"""Corrupt checkpoints are refused with a clear message (never torch's advice to load unsafely), every
checkpoint the toolkit writes carries a SHA-256, and a single flipped bit is refused on load and resume."""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from toolkit.data import MoonsDataModule
from toolkit.models import MLP
from toolkit.security import (ChecksumMismatchError, CorruptCheckpointError, Sha256CheckpointIO, safe_load,
                              sha256_file, write_sidecar)
from toolkit.training import ClassifierModule, fit

CLEAR = "is not a valid checkpoint (truncated/corrupt)"


def _good(path):
    torch.manual_seed(0)
    torch.save(nn.Linear(30, 20).state_dict(), path)
    return path.read_bytes()


def _truncated(data):
    return data[: len(data) // 2]


def _empty(data):
    return b""


def _random(data):
    return bytes(torch.randint(0, 256, (len(data),), generator=torch.Generator().manual_seed(1),
                               dtype=torch.uint8).tolist())


def _damaged_header(data):  # the zip's first local header and the pickle's name field overwritten
    return b"\xff" * 64 + data[64:]


def _legacy_damaged_header(data):  # a legacy (non-zip) torch file whose pickle header is damaged
    return b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\x00\x00\xff\xfe"


CORRUPTIONS = [_truncated, _empty, _random, _damaged_header, _legacy_damaged_header]


def _fit(tmp_path, **kwargs):
    return fit(lambda: ClassifierModule(MLP(2, 2, hidden_sizes=(8,)), num_classes=2),
               MoonsDataModule(n_samples=120, batch_size=32), test=False, accelerator="cpu", runs_dir=tmp_path,
               enable_progress_bar=False, **kwargs)


@pytest.mark.parametrize("damage", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_a_corrupt_file_is_refused_naming_it_and_never_advising_weights_only_false(tmp_path, damage):
    path = tmp_path / "model.pt"
    path.write_bytes(damage(_good(path)))
    with pytest.raises(Exception) as raw:  # what torch says on its own (the unclear errors)
        torch.load(path, weights_only=True)
    assert CLEAR not in str(raw.value)
    for load in (lambda: safe_load(path), lambda: Sha256CheckpointIO().load_checkpoint(path)):
        with pytest.raises(CorruptCheckpointError, match=r"model\.pt.*is not a valid checkpoint") as error:
            load()
        assert CLEAR in str(error.value)
        assert "weights_only=False" not in str(error.value) and "`False`" not in str(error.value)
        assert error.value.__cause__ is None and error.value.__suppress_context__  # torch's advice not chained


def _flip_one_bit_in_a_weight(path):
    """Flip the lowest bit of one float inside a stored tensor (the zip stays valid: no CRC check)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 64)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    offset = info.header_offset + 30 + name_length + extra_length  # the local header's own lengths
    data[offset + 8] ^= 1
    path.write_bytes(bytes(data))


def test_a_flipped_bit_loads_silently_with_torch_and_is_refused_by_safe_load(tmp_path):
    path = tmp_path / "model.pt"
    original = {"w": torch.randn(32, 8)}
    torch.save(original, path)
    write_sidecar(path)
    assert (tmp_path / "model.pt.sha256").read_text().split() == [hashlib.sha256(path.read_bytes()).hexdigest(),
                                                                  "model.pt"]
    _flip_one_bit_in_a_weight(path)
    assert not torch.equal(torch.load(path, weights_only=True)["w"], original["w"])  # silent without the digest
    with pytest.raises(ChecksumMismatchError, match=r"model\.pt.*model\.pt\.sha256"):
        safe_load(path)


@pytest.mark.slow
def test_fit_writes_a_digest_beside_every_checkpoint_and_refuses_a_flipped_bit_on_resume(tmp_path):
    result = _fit(tmp_path, max_epochs=3, callbacks=[ModelCheckpoint(save_top_k=1, monitor="val_loss",
                                                                     save_last=True)])
    checkpoints = sorted((result.run_dir / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 2  # the best and last; save_top_k's removed files took their digests along
    assert sorted(p.name for p in (result.run_dir / "checkpoints").glob("*.sha256")) == \
        sorted(p.name + ".sha256" for p in checkpoints)
    for path in checkpoints:
        assert (path.parent / (path.name + ".sha256")).read_text().split()[0] == sha256_file(path)
    last = result.run_dir / "checkpoints" / "last.ckpt"
    _flip_one_bit_in_a_weight(last)
    with pytest.raises(ChecksumMismatchError, match="last.ckpt"):
        _fit(tmp_path, max_epochs=4, ckpt_path="last")
    with pytest.raises(ChecksumMismatchError, match="last.ckpt"):
        _fit(tmp_path, max_epochs=4, ckpt_path=str(last))


@pytest.mark.slow
def test_fit_refuses_a_truncated_checkpoint_clearly(tmp_path):
    result = _fit(tmp_path, max_epochs=1, callbacks=[ModelCheckpoint(save_last=True)])
    last = result.run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(_truncated(last.read_bytes()))
    os.remove(str(last) + ".sha256")  # no digest to catch it first: the reader must still say what is wrong
    with pytest.raises(CorruptCheckpointError, match="last.ckpt.*not a valid checkpoint"):
        _fit(tmp_path, max_epochs=2, ckpt_path="last")


@pytest.mark.slow
def test_the_unified_lightning_trainer_gets_a_plugin_of_its_own_that_writes_and_checks_the_digest(tmp_path):
    L = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(L.LightningModule):  # a user's own module of the unified package
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(16, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(32, 16), torch.randint(0, 2, (32,))), batch_size=8)

    def trainer(epochs):
        return L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=[L.pytorch.callbacks.ModelCheckpoint(save_last=True)],
                         plugins=[Sha256CheckpointIO.for_namespace(L.pytorch)])

    with pytest.raises(Exception, match="invalid type for plugin"):  # why the namespace's own class is needed
        L.Trainer(plugins=[Sha256CheckpointIO()])
    trainer(1).fit(Tiny(), loader)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert (tmp_path / "checkpoints" / "last.ckpt.sha256").read_text().split()[0] == sha256_file(last)
    _flip_one_bit_in_a_weight(last)
    with pytest.raises(ChecksumMismatchError, match="last.ckpt"):
        trainer(2).fit(Tiny(), loader, ckpt_path=str(last))
