"""Saved models are byte-stable: saving the same model again, later, or a copy of it living at
other memory addresses, writes the same bytes; the files still load and predict the same."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import skops.io
from sklearn.ensemble import RandomForestClassifier

from bonexray.io.modelfiles import ZIP_EPOCH, canonical_zip, dump_skops, save_keras
from bonexray.models.keras.files import load_keras_model


def _data(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")


def _assert_canonical(path) -> None:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {ZIP_EPOCH}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def trained_model() -> keras.Model:
    """A small two-head model, trained one epoch from seed 0."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    inputs = keras.Input((6,))
    # One policy object shared by layers, as the pipeline's networks have: Keras writes its
    # id() (a memory address) into config.json as shared_object_id.
    policy = keras.DTypePolicy("float32")
    hidden = keras.layers.Dense(4, activation="relu", dtype=policy)(inputs)
    model = keras.Model(
        inputs,
        {
            "region": keras.layers.Dense(3, activation="softmax", name="region", dtype=policy)(
                hidden
            ),
            "fracture": keras.layers.Dense(1, activation="sigmoid", name="fracture")(hidden),
        },
    )
    # Trained and compiled, so the optimizer's state is in the file too.
    model.compile(
        optimizer="adam",
        loss={"region": "sparse_categorical_crossentropy", "fracture": "binary_crossentropy"},
    )
    model.fit(x, {"region": (y * 2).astype("int64"), "fracture": y}, epochs=1, verbose=0)
    return model


def test_keras_saved_twice_a_second_apart_is_byte_identical(tmp_path):
    x, _ = _data()
    model = trained_model()
    save_keras(model, tmp_path / "a.keras")
    time.sleep(1.1)  # date_saved counts seconds
    save_keras(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    _assert_canonical(tmp_path / "a.keras")
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert metadata["date_saved"] == "1980-01-01@00:00:00"
    assert metadata["keras_version"] == keras.__version__

    # Loadable the way the pipeline loads models (safe_mode), and with the optimizer.
    expected = model.predict(x, verbose=0)
    for loaded in (
        load_keras_model(tmp_path / "a.keras"),
        keras.saving.load_model(tmp_path / "a.keras"),
    ):
        got = loaded.predict(x, verbose=0)
        for head in ("region", "fracture"):
            np.testing.assert_allclose(got[head], expected[head], rtol=1e-6, atol=1e-7)


def test_keras_model_trained_and_saved_in_two_processes_is_byte_identical(tmp_path):
    """As two runs of a train stage: other processes, so other memory addresses."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]); import test_modelfiles as t; "
        "from bonexray.io.modelfiles import save_keras; save_keras(t.trained_model(), sys.argv[1])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_DETERMINISTIC_OPS": "1"}
    for name in ("first.keras", "second.keras"):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name), str(Path(__file__).parent)],
            check=True,
            env=env,
            capture_output=True,
        )
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()


def test_skops_saved_twice_and_from_a_copy_is_byte_identical(tmp_path):
    x, y = _data()
    forest = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, y)
    dump_skops(forest, tmp_path / "a.skops")
    time.sleep(1.1)
    dump_skops(forest, tmp_path / "b.skops")
    # A deep copy holds the same values at other addresses and its tree nodes in other memory
    # (their padding bytes differ): skops's ids differ, the bytes do not.
    dump_skops(copy.deepcopy(forest), tmp_path / "c.skops")
    first = (tmp_path / "a.skops").read_bytes()
    assert first == (tmp_path / "b.skops").read_bytes() == (tmp_path / "c.skops").read_bytes()
    _assert_canonical(tmp_path / "a.skops")

    path = tmp_path / "a.skops"
    loaded = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    np.testing.assert_array_equal(loaded.predict_proba(x), forest.predict_proba(x))
    # skops's memo survives the renumbering: the tree estimators are distinct objects still.
    assert len({id(tree) for tree in loaded.estimators_}) == len(forest.estimators_)


def test_canonical_zip_keeps_each_members_compression(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("z.txt", "b" * 1000, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("a.txt", "a" * 1000, compress_type=zipfile.ZIP_STORED)
    path.chmod(0o644)
    canonical_zip(path)
    assert path.stat().st_mode & 0o777 == 0o644  # the file's own mode kept
    with zipfile.ZipFile(path) as archive:
        assert [(i.filename, i.compress_type) for i in archive.infolist()] == [
            ("a.txt", zipfile.ZIP_STORED),
            ("z.txt", zipfile.ZIP_DEFLATED),
        ]
        assert archive.read("z.txt") == b"b" * 1000
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
