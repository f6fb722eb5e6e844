"""MNIST-1D: the DataModule against the mnist1d package's own generator, the cache, the shift sets."""

import json
import random

import numpy as np
import pytest
import torch

import toolkit.data.mnist1d as mnist1d_module
from toolkit.data import MNIST1D_CORRUPTIONS, MNIST1D_SHIFT_LEVELS, MNIST1DDataModule, make_mnist1d

SMALL = 1000  # signals in the modules built here: fast to generate, enough for stratified splits


def _package_arrays(num_samples=SMALL, seed=42, **knobs):
    """The package's generator called directly, as its README shows (train and test parts joined)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    for key, value in knobs.items():
        setattr(args, key, value)
    data = make_dataset(args)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def test_make_mnist1d_equals_the_packages_generator():
    x, y = make_mnist1d(num_samples=SMALL, cache=False)
    x_ref, y_ref = _package_arrays()
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (SMALL, 40)
    np.testing.assert_array_equal(x, x_ref.astype(np.float32))
    np.testing.assert_array_equal(y, y_ref)
    assert np.bincount(y).tolist() == [SMALL // 10] * 10


def test_knobs_reach_the_generator():
    x, _ = make_mnist1d(num_samples=SMALL, iid_noise_scale=0.3, max_translation=10, cache=False)
    x_ref, _ = _package_arrays(iid_noise_scale=0.3, max_translation=10)
    np.testing.assert_array_equal(x, x_ref.astype(np.float32))
    assert not np.array_equal(x, make_mnist1d(num_samples=SMALL, cache=False)[0])


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


@pytest.mark.parametrize("cache", [False, True])
def test_every_global_rng_is_left_as_found(cache):
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = _draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    make_mnist1d(num_samples=SMALL, seed=3, cache=cache)   # the package seeds random and numpy with 3
    dm = MNIST1DDataModule(num_samples=SMALL, shuffle_seq=True)
    dm.setup()
    dm.shifted_tensors("shear", 2)
    assert _draws() == expected


def test_the_generator_itself_does_move_the_global_rngs():
    """The property above is not vacuous: the package does reseed numpy's and Python's RNGs."""
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    args = get_dataset_args()
    args.num_samples = 100
    make_dataset(args)
    assert np.random.rand() != expected


# ---- the cache ---------------------------------------------------------------------------------------
def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_cache_is_reused_without_calling_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    first = make_mnist1d(num_samples=SMALL)
    files = _cache_files(tmp_path / "mnist1d")
    assert len(files) == 2 and {p.rsplit(".", 1)[1] for p in files} == {"npz", "json"}   # no temporary left

    def _fail(args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(mnist1d_module, "_generate", _fail)
    second = make_mnist1d(num_samples=SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_other_arguments_get_another_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    a = make_mnist1d(num_samples=SMALL)[0]
    b = make_mnist1d(num_samples=SMALL, shear_scale=2.0)[0]
    assert len(_cache_files(tmp_path / "mnist1d")) == 4 and not np.array_equal(a, b)


def _swap_payload(data_path):
    """Replace the cached file by a valid npz of other signals (same shapes and dtypes)."""
    with np.load(data_path, allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]
    with open(data_path, "wb") as handle:
        np.savez(handle, x=x + 1, y=y)


@pytest.mark.parametrize("damage", ["swap_payload", "flip_byte", "truncate", "edit_sidecar_hash", "edit_sidecar_args",
                                    "delete_sidecar", "delete_data"])
def test_a_damaged_cache_is_regenerated_never_trusted(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    clean = make_mnist1d(num_samples=SMALL)
    data = next((tmp_path / "mnist1d").glob("*.npz"))
    meta = data.with_suffix(".json")
    if damage == "swap_payload":
        _swap_payload(data)
    elif damage == "flip_byte":
        payload = bytearray(data.read_bytes())
        payload[len(payload) // 2] ^= 0xFF                   # inside x: still a loadable npz
        data.write_bytes(bytes(payload))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    elif damage.startswith("edit_sidecar"):
        stored = json.loads(meta.read_text())
        if damage == "edit_sidecar_hash":
            stored["sha256"] = "0" * 64
        else:
            stored["key"]["args"]["shear_scale"] = 9.0
        meta.write_text(json.dumps(stored))
    else:
        (meta if damage == "delete_sidecar" else data).unlink()
    with pytest.warns(UserWarning, match="failed its check"):
        again = make_mnist1d(num_samples=SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(clean, again))
    make_mnist1d(num_samples=SMALL)                          # repaired: no warning the next time


def test_swapped_payload_would_be_loaded_without_the_sha256_check(tmp_path, monkeypatch):
    """The swap above is a valid npz that only the SHA-256 catches: loaded unchecked, it is other data."""
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    clean, _ = make_mnist1d(num_samples=SMALL)
    data = next((tmp_path / "mnist1d").glob("*.npz"))
    _swap_payload(data)
    with np.load(data, allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["x"], clean + 1)


def test_unwritable_cache_still_returns_the_data(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="could not write"):
        x, _ = make_mnist1d(num_samples=SMALL)
    assert x.shape == (SMALL, 40)


# ---- the DataModule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("flatten", [False, True])
def test_shapes_and_split_sizes(flatten):
    dm = MNIST1DDataModule(num_samples=SMALL, flatten=flatten)
    x, y = dm.tensors("train")
    assert tuple(x.shape[1:]) == ((40,) if flatten else (1, 40)) == dm.input_shape
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert [len(dm.tensors(s)[1]) for s in ("train", "val", "test")] == [700, 150, 150]
    for split in ("train", "val", "test"):   # stratified: the classes are balanced in every split
        counts = torch.bincount(dm.tensors(split)[1], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_default_is_the_papers_5000_signals_and_the_papers_4000_1000_split():
    dm = MNIST1DDataModule(val_fraction=0.0, test_fraction=0.2)
    assert [len(dm.tensors(s)[1]) for s in ("train", "val", "test")] == [4000, 0, 1000]
    x_ref, y_ref = _package_arrays(num_samples=5000)
    x, y = dm.load_arrays()
    np.testing.assert_array_equal(x, x_ref.astype(np.float32))
    np.testing.assert_array_equal(y, y_ref)


def test_inputs_are_normalized_with_training_statistics_only():
    dm = MNIST1DDataModule(num_samples=SMALL, flatten=True)
    x_raw, y_raw = dm.load_arrays()
    train = x_raw[dm.split_indices["train"]].astype(np.float64)
    mean, std = train.mean(), train.std()
    x_test, y_test = dm.tensors("test")
    expected = (x_raw[dm.split_indices["test"]] - mean) / std
    np.testing.assert_allclose(x_test.numpy(), expected, atol=1e-5)
    assert torch.equal(y_test, torch.as_tensor(y_raw[dm.split_indices["test"]]))
    x_train = dm.tensors("train")[0]
    assert abs(x_train.mean().item()) < 1e-5 and abs(x_train.std(unbiased=False).item() - 1) < 1e-4
    # the test split's own statistics differ, so they were not used
    assert abs(x_raw[dm.split_indices["test"]].mean() - mean) > 1e-4


def test_split_depends_on_seed_but_the_signals_do_not():
    a, b = MNIST1DDataModule(num_samples=SMALL, seed=0), MNIST1DDataModule(num_samples=SMALL, seed=1)
    assert np.array_equal(a.load_arrays()[0], b.load_arrays()[0])
    assert not np.array_equal(a.split_indices["test"], b.split_indices["test"])
    c = MNIST1DDataModule(num_samples=SMALL, generator_seed=0)
    assert not np.array_equal(a.load_arrays()[0], c.load_arrays()[0])


def test_shuffle_seq_applies_one_fixed_permutation():
    plain = MNIST1DDataModule(num_samples=SMALL)
    shuffled = MNIST1DDataModule(num_samples=SMALL, shuffle_seq=True)
    perm = shuffled.permutation
    assert sorted(perm.tolist()) == list(range(40)) and not np.array_equal(perm, np.arange(40))
    np.testing.assert_array_equal(shuffled.load_arrays()[0], plain.load_arrays()[0][:, perm])
    x_plain, _ = plain.shifted_tensors("iid_noise", 1)
    x_shuffled, _ = shuffled.shifted_tensors("iid_noise", 1)
    torch.testing.assert_close(x_shuffled[..., torch.as_tensor(np.argsort(perm))] * shuffled.std + shuffled.mean,
                               x_plain * plain.std + plain.mean, atol=1e-5, rtol=0)


def test_ood_classes_are_held_out_and_relabelled():
    dm = MNIST1DDataModule(num_samples=SMALL, ood_classes=(9, 3))
    assert dm.ood_classes == (3, 9) and dm.num_classes == 8
    assert dm.class_names == ("0", "1", "2", "4", "5", "6", "7", "8")
    _, y_raw = dm.load_arrays()
    for split in ("train", "val", "test"):
        y = dm.tensors(split)[1]
        assert set(y.tolist()) == set(range(8))
        kept = dm.split_indices[split][~np.isin(y_raw[dm.split_indices[split]], (3, 9))]
        assert torch.equal(y, torch.as_tensor(dm._relabel[y_raw[kept]]))
    assert len(dm.ood_tensors()) == 2 * SMALL // 10
    x_ood, y_ood = next(iter(dm.ood_dataloader()))
    assert (y_ood == -1).all() and tuple(x_ood.shape[1:]) == (1, 40)
    with pytest.raises(ValueError, match="ood_classes is empty"):
        MNIST1DDataModule(num_samples=SMALL).ood_tensors()


def test_manifest_records_the_generator_settings():
    manifest = MNIST1DDataModule(num_samples=SMALL, shear_scale=1.0).manifest()
    assert manifest["settings"]["generator"]["shear_scale"] == 1.0
    assert manifest["settings"]["generator"]["num_samples"] == SMALL
    assert manifest["splits"]["test"]["size"] == 150


# ---- MNIST-1D-C ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("corruption", MNIST1D_CORRUPTIONS)
def test_shifted_set_is_fresh_signals_with_the_knob_turned_up(corruption):
    dm = MNIST1DDataModule(num_samples=SMALL, flatten=True)
    x, y = dm.shifted_tensors(corruption, 4, seed=1)
    knob, levels = MNIST1D_SHIFT_LEVELS[corruption]
    # as many signals per class as the test split holds (150 / 10), from the shift seed
    x_ref, y_ref = _package_arrays(num_samples=150, seed=dm.shift_seed(1), **{knob: levels[3]})
    np.testing.assert_allclose(x.numpy(), (x_ref.astype(np.float32) - dm.mean) / dm.std, atol=1e-5)
    assert torch.equal(y, torch.as_tensor(y_ref))
    assert dm.shift_seed(1) != dm.generator_seed
    clean_rows = {row.tobytes() for row in dm.load_arrays()[0]}
    assert not any(row.tobytes() in clean_rows for row in x_ref.astype(np.float32))


def test_shift_levels_increase_and_start_above_the_papers_values():
    for knob, levels in MNIST1D_SHIFT_LEVELS.values():
        assert list(levels) == sorted(set(levels)) and levels[0] > mnist1d_module.PAPER_DEFAULTS[knob]


def test_shift_dataloader_is_seeded_and_keeps_the_classes():
    dm = MNIST1DDataModule(num_samples=SMALL, ood_classes=(0,))
    a, b, c = (dm.shifted_tensors("corr_noise", 2, seed=s) for s in (0, 0, 1))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert set(a[1].tolist()) == set(range(9)) and len(a[1]) >= len(dm.tensors("test")[1])
    batches = list(dm.shift_dataloader("corr_noise", 2))
    assert torch.equal(torch.cat([y for _, y in batches]), a[1])


# ---- bad inputs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_samples": 1005}, ValueError, "num_samples must be a multiple of 10"),
    ({"num_samples": 50}, ValueError, "num_samples must be an integer >= 100"),
    ({"num_samples": 1000.0}, ValueError, "num_samples"),
    ({"generator_seed": -1}, ValueError, "generator_seed"),
    ({"generator_seed": 2**32}, ValueError, "generator_seed"),
    ({"iid_noise_scale": -0.1}, ValueError, "iid_noise_scale"),
    ({"corr_noise_scale": float("nan")}, ValueError, "corr_noise_scale"),
    ({"max_translation": 0}, ValueError, "max_translation"),
    ({"max_translation": 73}, ValueError, "max_translation"),
    ({"shear_scale": "big"}, ValueError, "shear_scale"),
    ({"scale_coeff": 2.0}, ValueError, "scale_coeff"),
    ({"shuffle_seq": 1}, TypeError, "shuffle_seq"),
    ({"flatten": "yes"}, TypeError, "flatten"),
    ({"ood_classes": (10,)}, ValueError, "ood_classes"),
    ({"ood_classes": (1, 1)}, ValueError, "ood_classes"),
    ({"ood_classes": tuple(range(9))}, ValueError, "ood_classes"),
    ({"ood_classes": "89"}, TypeError, "ood_classes"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, ValueError, "val_fraction \\+ test_fraction"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        MNIST1DDataModule(**kwargs)


@pytest.mark.parametrize("call, error, match", [
    (lambda dm: dm.shifted_tensors("fog", 1), ValueError, "corruption must be one of"),
    (lambda dm: dm.shifted_tensors("shear", 6), ValueError, "severity"),
    (lambda dm: dm.shifted_tensors("shear", True), ValueError, "severity"),
    (lambda dm: dm.shift_dataloader("shear", 1, seed=-1), ValueError, "seed"),
    (lambda dm: dm.tensors("dev"), ValueError, "split must be one of"),
    (lambda dm: make_mnist1d(num_samples=SMALL, cache="yes"), TypeError, "cache"),
])
def test_bad_calls_are_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call(MNIST1DDataModule(num_samples=SMALL))


def test_dataset_card_documents_mnist1d_and_matches_its_manifest():
    from toolkit.governance import dataset_card

    card = dataset_card(MNIST1DDataModule())
    assert "matches `mnist1d.json`" in card and "arXiv:2011.14439" in card and "not documented" not in card


def test_a_missing_mnist1d_package_is_named(monkeypatch):
    from importlib.metadata import PackageNotFoundError

    def _missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.version", _missing)
    with pytest.raises(ImportError, match="pip install 'mnist1d"):
        make_mnist1d(num_samples=SMALL)
