"""`bonexray predict` end to end on the tiny artifact set of served.py (the pipeline's own
functions: repair, features, a tiny Keras CNN, a tiny forest, evaluate's serving records),
with real PNG, JPEG and DICOM files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from badfiles import write_dicom
from PIL import Image
from served import GATE, MODELS, SIZE, radiograph, tiny_params
from tiny_sample import REGIONS

from bonexray import cli
from bonexray.evaluation import serving
from bonexray.features import wavelet as features
from bonexray.inference.predict import (
    ArtifactsError,
    Predictor,
    Preprocessing,
    TableWriter,
    _guarded,
    format_output,
    output_columns,
)
from bonexray.io import predictions
from bonexray.io.names import display
from bonexray.io.params import ParamsError
from bonexray.io.shards import ShardReader, ShardWriter
from bonexray.models.interface import KERAS

COLUMNS = output_columns(REGIONS)


def write_inputs(root: Path) -> dict[str, Path]:
    """New images to predict, good and bad, PNG/JPEG/DICOM."""
    root.mkdir(parents=True)
    stored = (radiograph(7).astype(np.uint16) * 16)[:, :40]  # 12-bit, like a CR
    paths = {name: root / name for name in ("good.png", "good.jpg", "notes.jpg")}
    Image.fromarray(radiograph(31)).save(paths["good.png"])
    Image.fromarray(radiograph(32)).save(paths["good.jpg"], quality=90)
    paths["notes.jpg"].write_text("left wrist, see report\n")
    dicoms = {
        "mono2.dcm": dict(pixels=stored),
        # The same image stored inverted, as MONOCHROME1 detectors write it.
        "mono1.dcm": dict(pixels=4095 - stored, photometric="MONOCHROME1"),
        # ... and what a decoder that ignored MONOCHROME1 would see.
        "mono1_read_as_mono2.dcm": dict(pixels=4095 - stored),
        "windowed.dcm": dict(pixels=stored, WindowCenter=1600, WindowWidth=800),
        "cine.dcm": dict(pixels=stored, frames=3),
    }
    for name, spec in dicoms.items():
        pixels = spec.pop("pixels")
        write_dicom(root / name, pixels, BodyPartExamined="HAND", **spec)
        paths[name] = root / name
    series = root / "series"
    for k in range(3):
        write_dicom(series / f"IM{k:04d}", np.roll(stored, 5 * k, axis=1), InstanceNumber=k + 1)
    (series / "DICOMDIR").write_bytes(b"\0" * 200)  # a sidecar: skipped, not an error row
    paths["series"] = series
    square = radiograph(33)[:SIZE, :SIZE]  # working size: no resampling, exact mirror
    Image.fromarray(square).save(root / "square.png")
    Image.fromarray(np.ascontiguousarray(square[:, ::-1])).save(root / "square_mirrored.png")
    paths |= {"square.png": root / "square.png", "mirrored": root / "square_mirrored.png"}
    return paths


@pytest.fixture(scope="module")
def built(served, tmp_path_factory) -> dict:
    return {**served, "inputs": write_inputs(tmp_path_factory.mktemp("predict") / "inputs")}


def run_cli(built: dict, *args: str, params: Path | None = None) -> int:
    return cli.main(
        [
            "predict",
            *args,
            "--params",
            str(params or built["params"]),
            "--artifacts",
            str(built["artifacts"]),
        ]
    )


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])


def test_all_good_inputs_exit_0_with_calibrated_rows(built, capsys):
    i = built["inputs"]
    paths = [i["good.png"], i["good.jpg"], i["mono1.dcm"], i["windowed.dcm"], i["series"]]
    assert run_cli(built, *map(str, paths), "--model", "cnn") == 0
    table = read_csv(capsys.readouterr().out)
    assert list(table.columns) == COLUMNS
    assert len(table) == 4 + 3  # the series folder: one row per file, DICOMDIR skipped
    assert table["error"].isna().all() and (table["model"] == "cnn").all()
    assert sorted(table["path"][4:]) == [str(i["series"] / f"IM{k:04d}") for k in range(3)]
    proba = table[predictions.region_columns(REGIONS)].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)  # withheld rows too
    # The VOI window clips a fifth of windowed.dcm to black or white: unlike training.
    assert table["decision"].tolist() == ["called"] * 3 + ["withheld"] + ["called"] * 3
    assert table["quality"][3] == "out_of_distribution" and table["region"].isna()[3]
    called = table[table["decision"] == "called"]
    assert (called["region"] == np.array(REGIONS)[proba[called.index].argmax(axis=1)]).all()
    record = serving.read(built["artifacts"] / "serving", "cnn")
    decided = (called["p_fracture"] >= record.threshold).astype(int)
    near = (called["p_fracture"] - record.threshold).abs() < 1e-6  # the CSV has 6 decimals
    assert (decided == called["fracture"])[~near].all(), (record.threshold, called["p_fracture"])


@pytest.mark.parametrize("model", MODELS)
def test_predictions_match_the_pipeline_after_calibration(built, model):
    """Same preprocessing as training: an image's prediction equals what its training
    stage wrote for it, temperature-scaled with the serving record."""
    predictor = Predictor.load(built["artifacts"], built["cfg"], model)
    stage = predictions.read(built["artifacts"] / "predictions" / f"{model}.parquet", REGIONS)
    out = predictor.run([built["root"] / rel for rel in stage["id"]])
    assert (out["error"] == "").all()
    columns = predictions.region_columns(REGIONS)
    t = predictor.record.temperatures
    np.testing.assert_allclose(
        out[columns].to_numpy(float), t.region_proba(stage[columns].to_numpy()), atol=1e-6
    )
    np.testing.assert_allclose(
        out["p_fracture"].to_numpy(float), t.fracture_proba(stage["p_fracture"]), atol=1e-6
    )


def test_dicom_photometric_and_window_are_applied(built):
    i = built["inputs"]
    predictor = Predictor.load(built["artifacts"], built["cfg"], "cnn")
    batches = []
    names = ["mono2.dcm", "mono1.dcm", "mono1_read_as_mono2.dcm", "windowed.dcm"]
    out = predictor.run([i[n] for n in names], on_batch=batches.append).set_index("path")
    p = {n: out.loc[str(i[n]), "p_fracture"] for n in names}
    assert p["mono1.dcm"] == pytest.approx(p["mono2.dcm"], abs=1e-3)  # MONOCHROME1 inverted
    assert abs(p["mono1_read_as_mono2.dcm"] - p["mono2.dcm"]) > 1e-3  # ...which matters here
    # The explainer hook: the working images and the model inputs, per batch, in order.
    (batch,) = batches
    assert batch.paths == [str(i[n]) for n in names] and batch.ok.all()
    assert batch.working.shape == (4, SIZE, SIZE) and batch.working.dtype == np.uint8
    assert batch.inputs.shape == (4, *predictor.preprocessing.item_shape)
    region, fracture = predictor.probabilities(batch.working, batch.inputs)
    np.testing.assert_allclose(fracture, batch.rows["p_fracture"].to_numpy(float))
    mono2, mono1, unread, windowed = batch.working.astype(int)
    assert np.abs(mono1 - mono2).max() <= 1 and np.abs(unread - mono2).mean() > 20
    saturated = [np.isin(w, (0, 255)).mean() for w in (mono2, windowed)]
    assert saturated[1] > saturated[0] + 0.2  # VOI window 1200..2000 clips the rest


def test_real_computed_radiograph_is_predicted(built, capsys):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG3_UNCR.dcm")  # pydicom-data: CR, 1760x1760, MONOCHROME1
    if path is None:
        pytest.skip("pydicom-data is not installed")
    assert run_cli(built, path, "--model", "rf", "--format", "json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["error"] == "" and row["status"] == "ok" and 0 <= row["p_fracture"] <= 1
    # A real CR is nothing like the tiny synthetic training set: the gate says so.
    assert row["decision"] == "withheld" and row["quality"] == "out_of_distribution"
    assert row["region"] is None and row["fracture"] is None


def test_a_bad_input_among_good_ones_exits_1_and_the_others_are_predicted(built, capsys):
    i = built["inputs"]
    missing = built["root"] / "inputs" / "gone.png"
    paths = [i["good.png"], i["notes.jpg"], i["cine.dcm"], missing, i["good.jpg"]]
    out_file = built["root"] / "out" / "bad.json"
    code = run_cli(built, *map(str, paths), "--format", "json", "--out", str(out_file))
    assert code == 1
    rows = json.loads(out_file.read_text())
    assert [list(r) for r in rows] == [COLUMNS] * 5
    errors = [r["error"] for r in rows]
    assert errors[0] == errors[4] == ""
    assert errors[1].startswith("not_image: text file")
    assert errors[2].startswith("unsupported: multi-frame DICOM (3 frames)")
    assert errors[3] == "missing: no such file"
    assert rows[1]["p_fracture"] is None and rows[1]["fracture"] is None
    assert rows[4]["p_fracture"] is not None and rows[4]["model"] == serving.best_model(
        built["artifacts"] / "serving"
    )
    err = capsys.readouterr().err
    assert f"{i['cine.dcm']}: unsupported: multi-frame" in err and "3 of 5 inputs" in err


def test_usage_errors_exit_2(built, capsys, tmp_path):
    good = str(built["inputs"]["good.png"])
    assert run_cli(built, good, "--model", "resnet") == 2
    err = capsys.readouterr().err
    assert "no serving record for model 'resnet'; known models: cnn, ensemble, rf" in err

    empty = tmp_path / "empty_artifacts"
    empty.mkdir()
    assert cli.main(["predict", good, "--params", str(built["params"]), "--artifacts", str(empty)])
    err = capsys.readouterr().err
    assert "serving/best.json: not found" in err and "dvc repro" in err and "dvc pull" in err

    no_models = tmp_path / "no_models"
    no_models.mkdir()
    for part in ("serving", "features"):
        (no_models / part).symlink_to(built["artifacts"] / part)
    args = ["predict", good, "--params", str(built["params"]), "--artifacts", str(no_models)]
    assert cli.main([*args, "--model", "cnn"]) == 2
    assert "models/cnn/model.keras: not found" in capsys.readouterr().err

    stale = {**built["cfg"], "features": {**built["cfg"]["features"], "wavelet": "db2"}}
    (tmp_path / "stale.yaml").write_text(yaml.safe_dump(stale))
    assert run_cli(built, good, params=tmp_path / "stale.yaml") == 2
    assert "features.wavelet: built with 'haar', params.yaml has 'db2'" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exited:  # argparse: no PATH
        cli.main(["predict"])
    assert exited.value.code == 2


def test_hflip_tta_averages_the_image_and_its_mirror(built):
    i = built["inputs"]
    cfg = {**built["cfg"], "predict": {"batch_size": 4, "tta": "hflip", **GATE}}
    plain = Predictor.load(built["artifacts"], built["cfg"], "cnn").run(
        [i["square.png"], i["mirrored"]]
    )
    tta = Predictor.load(built["artifacts"], cfg, "cnn").run([i["square.png"], i["mirrored"]])
    p_plain, p_tta = plain["p_fracture"].to_numpy(float), tta["p_fracture"].to_numpy(float)
    assert p_plain[0] != p_plain[1]  # the model is not mirror-symmetric...
    assert p_tta[0] == p_tta[1]  # ...but the average over both orientations is
    bad = {**built["cfg"], "predict": {"batch_size": 4, "tta": "rotate", **GATE}}
    with pytest.raises(ParamsError, match=r"predict.tta: 'rotate'"):
        Predictor.load(built["artifacts"], bad, "rf")


# ---------------------------------------------------------------- the ensemble


def test_the_ensemble_predicts_what_evaluate_scored(built):
    """predict --model ensemble on the test images equals the mean of the members'
    calibrated probabilities evaluate scored (each member with its own preprocessing:
    bands for the CNN, vectors for the forest), thresholded at the ensemble's own point."""
    predictor = Predictor.load(built["artifacts"], built["cfg"], "ensemble")
    assert predictor.record.members == tuple(MODELS)
    assert [m.preprocessing.family.features for m in predictor.model.members] == [
        "bands",
        "vectors",
    ]
    scored = built["scores"]["ensemble"].test
    out = predictor.run([built["root"] / rel for rel in scored["id"]])
    assert (out["error"] == "").all() and (out["model"] == "ensemble").all()
    columns = predictions.region_columns(REGIONS)
    np.testing.assert_allclose(out[columns].to_numpy(float), scored[columns], atol=1e-6)
    np.testing.assert_allclose(out["p_fracture"].to_numpy(float), scored["p_fracture"], atol=1e-6)
    called = out["decision"] == "called"
    assert called.any()
    threshold = predictor.record.threshold
    near = np.abs(scored["p_fracture"].to_numpy() - threshold) < 1e-6
    expected = (scored["p_fracture"].to_numpy() >= threshold).astype(int)
    assert (out["fracture"].to_numpy()[called & ~near] == expected[called & ~near]).all()
    assert threshold != serving.read(built["artifacts"] / "serving", "cnn").threshold


def test_ensemble_tta_is_each_members_tta_then_the_mean(built, capsys):
    i = built["inputs"]
    cfg = {**built["cfg"], "predict": {"batch_size": 4, "tta": "hflip", **GATE}}
    paths = [i["square.png"], i["mirrored"]]
    tta = Predictor.load(built["artifacts"], cfg, "ensemble").run(paths)
    members = [Predictor.load(built["artifacts"], cfg, m).run(paths) for m in MODELS]
    expected = np.mean([m["p_fracture"].to_numpy(float) for m in members], axis=0)
    np.testing.assert_allclose(tta["p_fracture"].to_numpy(float), expected, atol=1e-9)
    assert tta["p_fracture"][0] == pytest.approx(tta["p_fracture"][1], abs=1e-9)
    out = built["root"] / "cams_ensemble"
    assert run_cli(built, str(i["good.png"]), "--model", "ensemble", "--explain", str(out)) == 2
    err = capsys.readouterr().err
    assert "--explain needs a Keras model" in err and "the ensemble has no single" in err


def test_the_ensemble_describes_a_batch_once_for_all_its_members(built, monkeypatch):
    """The wavelet transform runs once per batch for the images and once for their mirror
    images (TTA), whatever the number of members, and the result is what each member gives
    alone."""
    i = built["inputs"]
    cfg = {**built["cfg"], "predict": {"batch_size": 4, "tta": "hflip", **GATE}}
    paths = [i["square.png"], i["mirrored"], i["good.png"]]
    alone = [Predictor.load(built["artifacts"], cfg, m).run(paths) for m in MODELS]
    ensemble = Predictor.load(built["artifacts"], cfg, "ensemble")
    calls = []

    def counted(working, config):
        calls.append(len(working))
        return features.describe(working, config)

    monkeypatch.setattr("bonexray.inference.predict.describe", counted)
    out = ensemble.run(paths)
    assert calls == [len(paths), len(paths)]  # the images, then their mirror images
    expected = np.mean([m["p_fracture"].to_numpy(float) for m in alone], axis=0)
    np.testing.assert_allclose(out["p_fracture"].to_numpy(float), expected, atol=1e-9)


def test_csv_and_json_hold_the_same_table(built):
    predictor = Predictor.load(built["artifacts"], built["cfg"], "rf")
    table = predictor.run([built["inputs"]["good.png"], built["inputs"]["notes.jpg"]])
    as_csv = read_csv(format_output(table, "csv"))
    as_json = pd.DataFrame(json.loads(format_output(table, "json")))
    assert list(as_csv.columns) == list(as_json.columns) == COLUMNS
    np.testing.assert_allclose(as_csv["p_fracture"][:1], as_json["p_fracture"][:1])
    assert as_csv["error"].isna()[0] and as_json["error"][0] == ""


def test_explain_writes_one_overlay_per_predicted_image(built, capsys, tmp_path):
    i = built["inputs"]
    out = tmp_path / "cams"
    paths = [i["good.png"], i["notes.jpg"], i["series"]]
    assert run_cli(built, *map(str, paths), "--model", "cnn", "--explain", str(out)) == 1
    table = read_csv(capsys.readouterr().out)
    assert list(table.columns) == [*COLUMNS, "explanation"]
    assert table["explanation"].isna().tolist() == [False, True, False, False, False]
    written = [Path(p) for p in table["explanation"].dropna()]
    assert [p.name for p in written] == [
        "00000_good.png",
        "00002_IM0000.png",
        "00003_IM0001.png",
        "00004_IM0002.png",
    ]
    assert sorted(out.iterdir()) == sorted(written)
    with Image.open(written[0]) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (SIZE, SIZE)

    assert run_cli(built, str(i["good.png"]), "--model", "rf", "--explain", str(out)) == 2
    assert "--explain needs a Keras model" in capsys.readouterr().err


# ---------------------------------------------------------------- hostile inputs (issue #13)


def test_rows_are_on_disk_before_a_later_failure(built, tmp_path):
    """An input whose decoding raises fails alone; a crash in a later batch keeps the rows
    already written."""
    i = built["inputs"]
    predictor = Predictor.load(built["artifacts"], built["cfg"], "rf")  # batch_size 4
    bad = str(tmp_path / "nul\0byte.png")  # the OS refuses the name: os.stat raises
    paths = [i["good.png"], bad, i["good.jpg"], i["square.png"], i["mirrored"], i["good.png"]]
    out = tmp_path / "partial.csv"

    def crash_on_second_batch(batch):
        if batch.paths[0] == str(i["mirrored"]):
            raise RuntimeError("interrupted")

    with open(out, "w", encoding="utf-8") as stream:
        writer = TableWriter(stream, "csv", predictor.columns)
        with pytest.raises(RuntimeError, match="interrupted"):
            for batch in predictor.stream(paths, on_batch=crash_on_second_batch):
                writer.write(batch.rows)
        table = read_csv(out.read_text())  # read while the file is still open: flushed
    assert len(table) == 4 and list(table.columns) == COLUMNS
    assert table["status"][1] in ("error", "bad_name") and np.isnan(table["p_fracture"][1])
    assert table["decision"][1] == "failed" and table["error"][1].startswith(table["status"][1])
    assert table["p_fracture"].notna().tolist() == [True, False, True, True]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_name_that_is_not_utf8_is_predicted_and_written_in_display_form(built, tmp_path, suffix):
    name = os.fsdecode(b"latin1_\xe9.png")
    Image.fromarray(radiograph(34)).save(tmp_path / name)
    out = tmp_path / f"out{suffix}"
    assert run_cli(built, str(tmp_path / name), "--model", "rf", "--out", str(out)) == 0
    text = out.read_text(encoding="utf-8")
    table = read_csv(text) if suffix == ".csv" else pd.DataFrame(map(json.loads, text.splitlines()))
    (path,) = table["path"]
    assert path == display(tmp_path / name) and path.endswith("latin1_\\xe9.png")
    assert table["status"][0] == "ok" and not table["error"].fillna("").any()
    assert 0 <= table["p_fracture"][0] <= 1


def write_hostile(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    images = {
        "black.png": np.zeros((48, 40), np.uint8),
        "white.png": np.full((48, 40), 255, np.uint8),
        "noise.png": rng.integers(0, 256, (48, 48), dtype=np.uint8),
        "strip.png": radiograph(35)[:4],  # 4 x 40: extreme geometry
    }
    colour = np.zeros((48, 48, 3), np.uint8)  # saturated red, green and blue bands
    for band in range(3):
        colour[:, 16 * band : 16 * (band + 1), band] = radiograph(36)[:, :16] // 2 + 128
    paths = {name: root / name for name in [*images, "colour.png", "colour.jpg"]}
    for name, pixels in images.items():
        Image.fromarray(pixels).save(paths[name])
    Image.fromarray(colour, "RGB").save(paths["colour.png"])
    Image.fromarray(colour, "RGB").save(paths["colour.jpg"], quality=90)  # decoded as luma
    return paths


def test_blank_extreme_colour_and_noise_images_are_not_called(built, tmp_path):
    paths = write_hostile(tmp_path)
    predictor = Predictor.load(built["artifacts"], built["cfg"], "cnn")
    table = predictor.run(list(paths.values())).set_index(pd.Index(list(paths)))
    assert (table["decision"] != "called").all(), table[["decision", "quality", "reason"]]
    assert table["region"].isna().all() and table["fracture"].isna().all()
    flags = table["quality"].str.split(";")
    for name in ("black.png", "white.png"):  # the decoder may refuse them itself ("blank")
        assert table.loc[name, "status"] == "blank" or "constant" in flags[name]
    strip = table.loc["strip.png"]  # refused by the decoder's geometry guard, or flagged here
    assert strip["status"] == "bad_geometry" or "extreme_geometry" in flags["strip.png"]
    for name in ("colour.png", "colour.jpg"):
        assert "colour_photo" in flags[name] and table.loc[name, "colourfulness"] > 50
    assert "out_of_distribution" in flags["noise.png"]
    withheld = table[table["decision"] == "withheld"]
    assert withheld["p_fracture"].notna().all() and (withheld["reason"] != "").all()


def test_in_distribution_images_are_called(built):
    """The val images set the threshold: (nearly) all of them, and the test images, pass."""
    predictor = Predictor.load(built["artifacts"], built["cfg"], "cnn")
    ids = [f"data/img{i:02d}.{'jpg' if i % 4 == 3 else 'png'}" for i in range(18, 30)]
    table = predictor.run([built["root"] / rel for rel in ids])
    assert (table["decision"] == "called").mean() >= 11 / 12, table[["quality", "reason"]]
    assert (table["quality"][table["decision"] == "called"] == "ok").all()
    assert table["colourfulness"].isna().all()  # grey sources
    reference = predictor.gate.reference
    assert reference.n_train == 18 and reference.n_val == 6


def test_a_failing_batch_call_is_retried_item_by_item():
    def strict_sqrt(x: np.ndarray) -> tuple[np.ndarray]:
        if (x < 0).any():
            raise ValueError("negative input")
        return (np.sqrt(x),)

    values = np.array([4.0, -1.0, 9.0])
    (roots,), failed = _guarded(strict_sqrt, (values,), (np.zeros(0),))
    assert roots.tolist() == [2.0, 3.0] and failed == {1: "ValueError: negative input"}
    (roots,), failed = _guarded(strict_sqrt, (values[1:2],), (np.zeros(0),))
    assert roots.shape == (0,) and failed == {0: "ValueError: negative input"}


def test_the_bad_input_corpus_gives_a_row_per_file(built, tmp_path):
    """Every corpus file (decodable or not, FIFOs and loops included) is one row, none crash,
    and only clean decodes are called, each with a status that says so."""
    import badfiles

    corpus = badfiles.build(tmp_path / "bad")
    out = tmp_path / "rows.jsonl"
    paths = [str(tmp_path / "bad" / name) for name in corpus]
    code = cli.main(
        ["predict", *paths, "--model", "rf", "--artifacts", str(built["artifacts"]),
         "--params", str(built["params"]), "--out", str(out)]
    )  # fmt: skip
    rows = pd.read_json(out, lines=True).set_index("path")
    assert code == 1 and len(rows) == len(corpus)
    for name, bad in corpus.items():
        row = rows.loc[str(tmp_path / "bad" / name)]
        if name == "folder.jpg" or (bad.root_only_differs and os.geteuid() == 0):
            continue  # a folder argument is expanded (this one is empty); root ignores chmod
        assert row["status"] == bad.status, (name, row["reason"])
        assert (row["decision"] == "called") <= (bad.status in ("ok", "truncated")), name
        assert bad.status == "ok" or row["reason"], name


def test_preprocessing_follows_the_coarsest_layout_of_the_shards(tmp_path):
    cfg = tiny_params()
    cfg["features"] = {**cfg["features"], "grid": "coarsest"}
    images = np.stack([radiograph(i)[:SIZE, :SIZE] for i in range(4)])
    ids = [f"data/img{i}.png" for i in range(4)]
    art = tmp_path / "artifacts"
    meta = {"size": SIZE, "keep_aspect": True}
    with ShardWriter(art / "repair", (SIZE, SIZE), np.uint8, shard_size=8, meta=meta) as writer:
        for item_id, image in zip(ids, images, strict=True):
            writer.add(item_id, image)
    split = pd.DataFrame({"id": ids, "split": ["train", "train", "val", "test"]})
    config = features.FeatureConfig.from_params(cfg["features"])
    features.build(split, ShardReader(art / "repair"), art / "features", config)

    prep = Preprocessing.load(cfg, art, KERAS)
    assert prep.item_shape == (SIZE // 4, SIZE // 4, 17)
    stored = ShardReader(art / "features" / "bands").take_ids(ids)
    np.testing.assert_allclose(prep.inputs(images), stored, atol=1e-5)
    finest = {**cfg, "features": {**cfg["features"], "grid": "finest"}}
    with pytest.raises(ArtifactsError, match="features.grid: built with 'coarsest'"):
        Preprocessing.load(finest, art, KERAS)
