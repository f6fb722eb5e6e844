"""Safe checkpoint loading: weights round-trip, SHA-256 pinning, a code-carrying pickle refused unexecuted."""

import pathlib
import pickle

import pytest
import torch
from torch import nn

from toolkit.security import ChecksumMismatchError, UnsafeCheckpointError, safe_load, sha256_file


class _TouchesAFile:
    """A harmless stand-in for malware: unpickling it creates ``marker`` (and nothing else)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_weights_round_trip_and_the_digest_equals_hashlib(tmp_path):
    import hashlib

    state = nn.Linear(3, 2).state_dict()
    path = tmp_path / "w.pt"
    torch.save(state, path)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = safe_load(path, expected_sha256=sha256_file(path).upper())
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_a_changed_file_fails_its_pinned_digest(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    digest = sha256_file(path)
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ChecksumMismatchError, match="expected_sha256"):
        safe_load(path, expected_sha256=digest)
    with pytest.raises(ValueError, match="expected_sha256 must be 64"):
        safe_load(path, expected_sha256="abc")


def test_a_checkpoint_that_carries_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "extra": _TouchesAFile(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="Nothing was executed"):
        safe_load(path)
    assert not marker.exists()
    # the payload is real: an unsafe load does run it (harmlessly, in tmp_path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_plain_pickle_with_code_is_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_TouchesAFile(marker), protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        safe_load(path)
    assert not marker.exists()


def test_missing_file_and_bad_path_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "none.pt")
    with pytest.raises(TypeError, match="path"):
        safe_load(3)
