"""dvc.yaml's model registry: one `artifacts:` entry per trained model, naming a stage's cached
out, fetched by name with `dvc artifacts get` from a real repository and remote."""

from __future__ import annotations

import yaml
from dvc.api import artifacts_show
from dvc.repo import Repo
from dvc.repo.artifacts import check_name_format  # imports gto when called, not here
from dvcrepo import commit, dvc, init, run
from paths import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SECTION = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]


def test_every_trained_model_is_a_registered_artifact_naming_a_cached_out():
    with Repo(str(REPO)) as repo:  # DVC's own reading of dvc.yaml, not ours
        artifacts = repo.artifacts.read()["dvc.yaml"]
        cached = {
            out.def_path for stage in repo.index.stages for out in stage.outs if out.use_cache
        }
    assert set(artifacts) == {*PARAMS["models"], "rf", "base_region"}
    for name, artifact in artifacts.items():
        check_name_format(name)  # DVC's own rule for artifact names
        assert artifact.type == "model", name
        assert artifact.desc and artifact.labels, name
        assert artifact.path in cached, f"{name}: {artifact.path} is no stage's cached out"


def test_dvc_artifacts_get_fetches_a_tagged_model_from_the_remote(tmp_path):
    repo = init(tmp_path / "repo")
    for name, artifact in SECTION.items():  # a stand-in file per model, tracked by DVC
        folder = repo / artifact["path"]
        folder.mkdir(parents=True)
        (folder / "weights.bin").write_bytes(name.encode())
        dvc(repo, "add", "-q", artifact["path"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": SECTION}, sort_keys=False))
    dvc(repo, "remote", "add", "-q", "-d", "local", str(tmp_path / "remote"))
    commit(repo, "models")
    # The registry's version tag (GTO's convention, what `gto register` writes): annotated.
    tag = ["tag", "-a", "rf@v1.0.0", "-m", "Registering artifact rf version v1.0.0"]
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", *tag)
    dvc(repo, "push", "-q")

    out = tmp_path / "fetched"
    dvc(tmp_path, "artifacts", "get", str(repo), "rf", "-o", str(out))
    assert (out / "weights.bin").read_bytes() == b"rf"
    shown = artifacts_show("rf", repo=str(repo))
    assert shown["path"] == SECTION["rf"]["path"]
    assert shown["rev"] == run(repo, "git", "rev-parse", "HEAD").strip()


def test_metrics_diff_shows_the_headline_and_no_stage_loses_the_run_cache():
    """`dvc metrics diff` reads the declared metrics only: compare.json and the data stages'
    summaries; per-model details are cached outs. No stage has a plain `cache: false` out
    (DVC does not save the run-cache for one; metrics and plots are exempt)."""
    with Repo(str(REPO)) as repo:
        outs = [out for stage in repo.index.stages for out in stage.outs]
    declared = {out.def_path for out in outs if out.is_metric}
    assert declared == {
        "metrics/compare.json",
        *(
            f"metrics/{stage}.json"
            for stage in ("census", "repair", "split", "relabel", "features")
        ),
    }
    plain_uncached = [o.def_path for o in outs if not (o.use_cache or o.is_metric or o.is_plot)]
    assert plain_uncached == []
    cached = {out.def_path for out in outs if out.use_cache}
    for model in (*PARAMS["models"], "rf"):
        assert {f"metrics/{model}.json", f"metrics/train/{model}.json"} <= cached, model
    assert "metrics/paired.json" in cached  # the paired tests: a table per pair, not headline
