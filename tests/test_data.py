"""The IDX parser, the search order for the files, the download path, the validation split."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from shared import data
from tests.conftest import idx_bytes, needs_real_data, synthetic, write_dataset, write_idx


def test_read_idx_round_trips(tmp_path):
    images, labels = synthetic(7, 0)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "i.gz", images), ndim=3), images)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "l.gz", labels), ndim=1), labels)
    assert data.read_idx(tmp_path / "i.gz", ndim=3).dtype == np.uint8


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "file is empty"),
        (b"P5 28 28 255 not an idx file", "not a gzip file"),
        (gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))[:-12], "damaged gzip data"),
        (gzip.compress(b"\x00\x00\x0d\x03" + b"\x00" * 12), "wrong magic number"),
        (gzip.compress(idx_bytes(np.zeros(5, np.uint8))), "wrong magic number"),  # 1-d, not 3-d
        (gzip.compress(b"\x00\x00\x08\x03\x00\x00"), "header truncated"),
        (gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-100]), "data truncated"),
        (gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)) + b"extra"), "longer than its header"),
    ],
    ids=["empty", "not-gzip", "cut-gzip", "foreign-magic", "wrong-dims", "short-header",
         "truncated-data", "trailing-data"],
)
def test_read_idx_names_file_and_damage(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        data.read_idx(path, ndim=3)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_load_rejects_mismatched_counts_and_bad_labels(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    write_idx(directory / data.FILES["train_labels"], np.zeros(19, np.uint8))
    with pytest.raises(ValueError, match="20 images but .* 19 labels"):
        data.load(directory)
    write_idx(directory / data.FILES["train_labels"], np.full(20, 10, np.uint8))
    with pytest.raises(ValueError, match=r"label 10 at index 0 is outside 0-9"):
        data.load(directory)


def test_load_rejects_wrong_image_size(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    write_idx(directory / data.FILES["test_images"], np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="images are 32x32, expected 28x28"):
        data.load(directory)


def test_explicit_dir_must_exist_and_be_complete(tmp_path, no_ambient_data):
    with pytest.raises(ValueError, match="--data-dir .*nowhere: no such directory"):
        data.find_data_dir(tmp_path / "nowhere")
    directory = write_dataset(tmp_path / "d")
    (directory / data.FILES["test_labels"]).unlink()
    with pytest.raises(ValueError, match="missing t10k-labels-idx1-ubyte.gz"):
        data.find_data_dir(directory)


def test_search_order(tmp_path, monkeypatch, no_ambient_data):
    debian = write_dataset(tmp_path / "debian")
    cache = write_dataset(no_ambient_data)
    env_dir = write_dataset(tmp_path / "env")
    explicit = write_dataset(tmp_path / "explicit")
    monkeypatch.setattr(data, "DEBIAN_DIR", debian)
    monkeypatch.setenv(data.ENV_VAR, str(env_dir))
    assert data.find_data_dir(explicit) == explicit
    assert data.find_data_dir() == env_dir
    monkeypatch.delenv(data.ENV_VAR)
    assert data.find_data_dir() == debian
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "gone")
    assert data.find_data_dir() == cache


def test_download_with_stubbed_fetch(tmp_path, no_ambient_data):
    source = write_dataset(tmp_path / "server", n_train=30, n_test=10)
    fetched = []

    def fetch(url, filename, directory):
        fetched.append(url)
        (directory / filename).write_bytes((source / filename).read_bytes())

    loaded = data.load(fetch=fetch)
    assert sorted(fetched) == sorted(data.DOWNLOAD_BASE + f for f in data.FILES.values())
    assert loaded.source == str(no_ambient_data)
    assert loaded.x_train.shape == (30, 28, 28) and loaded.y_test.shape == (10,)
    # Cached now: a second load fetches nothing.
    fetched.clear()
    data.load(fetch=fetch)
    assert fetched == []


def test_download_failure_is_a_clear_error(no_ambient_data):
    def offline(url, filename, directory):
        raise OSError("Network is unreachable")

    with pytest.raises(ConnectionError, match="could not download .*Network is unreachable.*--data-dir"):
        data.load(fetch=offline)


@pytest.mark.parametrize("n", [10, 100, 700, 1000, 60000])
@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 0.25, 1 / 3])
def test_validation_split_holds_out_what_keras_holds_out(n, fraction):
    """shared/data.py says it splits as fit(validation_split=...) does: run Keras' own split.
    (A behaviour test: it was among the citation checks, which only find quoted lines.)"""
    from keras.src.trainers.data_adapters import array_slicing

    from shared.data import split_sizes

    (train,), (validation,) = array_slicing.train_validation_split((np.arange(n),), fraction)
    assert split_sizes(n, fraction) == (len(train), len(validation))


def test_validation_split_comes_from_the_end_of_training_set():
    x, y = synthetic(100, 3)
    x_tr, y_tr, x_val, y_val = data.split_validation(x, y, 0.2)
    assert len(x_tr) == 80 and len(x_val) == 20
    assert np.array_equal(x_val, x[80:]) and np.array_equal(y_tr, y[:80])
    assert data.split_validation(x, y, 0.0)[2] is None
    with pytest.raises(ValueError, match="--validation-split 0.999"):
        data.split_validation(x, y, 0.999)  # no training image left


@needs_real_data
def test_real_dataset_loads():
    ds = data.load(data.DEBIAN_DIR)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
