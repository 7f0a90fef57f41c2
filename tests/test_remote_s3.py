"""A DVC remote on S3, end to end: a real S3 API (moto's server on 127.0.0.1), real `dvc`
commands in real git+DVC repositories, a tracked folder and a one-stage pipeline whose
command logs every run to a file outside the repositories, so a restore from the run cache
is told apart from a rerun.

Credentials go only to .dvc/config.local or the environment, never to .dvc/config."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from dvcrepo import commit, dvc, dvc_status, env, init, run
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.slow  # ~15 s: a few dozen dvc and git commands

BUCKET = "bonexray-remote"
PREFIX = "cache"
KEY_ID, SECRET = "bonexray-test-key-id", "bonexray-test-secret-key"  # moto accepts any
DATA = {"a.txt": b"alpha\n", "nested/b.bin": bytes(range(256)) * 40, "nested/c.txt": b""}
STAGE = """\
import os
from pathlib import Path

files = sorted(p for p in Path("data").rglob("*") if p.is_file())
Path("result").mkdir(exist_ok=True)
Path("result/summary.txt").write_text("".join(f"{p} {p.stat().st_size}\\n" for p in files))
with open(os.environ["BONEXRAY_RUN_LOG"], "a") as log:
    log.write("ran\\n")
"""
PIPELINE = {
    "stages": {
        "summarise": {"cmd": "python stage.py", "deps": ["stage.py", "data"], "outs": ["result"]}
    }
}
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port) with one bucket; yields its endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outside") / "runs.log"


def aws_env(log: Path, credentials: bool = False) -> dict[str, str]:
    """No AWS settings from this machine (no ~/.aws, no instance metadata): only ours."""
    extra = {
        "AWS_CONFIG_FILE": str(log.parent / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(log.parent / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1",
        "BONEXRAY_RUN_LOG": str(log),
    }
    if credentials:
        extra.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    return env(extra, drop=AWS_VARIABLES)


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def origin(s3, log, tmp_path_factory) -> Path:
    """The first machine: data tracked, remote set (credentials in config.local), data
    pushed, the stage run once and its run cache pushed; dvc.lock committed."""
    repo = init(tmp_path_factory.mktemp("origin") / "repo")
    environ = aws_env(log)
    for name, data in DATA.items():
        (repo / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "data" / name).write_bytes(data)
    (repo / "stage.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    dvc(repo, "add", "-q", "data", environ=environ)
    dvc(repo, "remote", "add", "-d", "s3", f"s3://{BUCKET}/{PREFIX}", environ=environ)
    dvc(repo, "remote", "modify", "s3", "endpointurl", s3, environ=environ)
    dvc(repo, "remote", "modify", "--local", "s3", "access_key_id", KEY_ID, environ=environ)
    dvc(repo, "remote", "modify", "--local", "s3", "secret_access_key", SECRET, environ=environ)
    commit(repo, "data and pipeline")
    assert "files pushed" in dvc(repo, "push", environ=environ)
    dvc(repo, "repro", environ=environ)
    assert runs(log) == 1
    dvc(repo, "push", "--run-cache", environ=environ)
    commit(repo, "dvc.lock")
    return repo


def clone(origin: Path, dest: Path) -> Path:
    run(dest.parent, "git", "clone", "-q", str(origin), str(dest))
    return dest


def test_credentials_stay_out_of_git(origin):
    config = (origin / ".dvc" / "config").read_text()
    assert f"s3://{BUCKET}/{PREFIX}" in config and "endpointurl = http://127.0.0.1:" in config
    assert KEY_ID not in config and SECRET not in config
    local = (origin / ".dvc" / "config.local").read_text()
    assert KEY_ID in local and SECRET in local
    assert run(origin, "git", "check-ignore", ".dvc/config.local").strip() == ".dvc/config.local"
    history = run(origin, "git", "log", "-p", "--all")
    assert KEY_ID not in history and SECRET not in history


def test_pull_restores_identical_bytes_into_a_wiped_cache(origin, s3, log, tmp_path):
    stored = client(s3).list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/files/md5/")
    assert stored["KeyCount"] >= len(DATA)  # pushed to the bucket, not somewhere else
    repo = tmp_path / "repo"
    shutil.copytree(origin, repo, symlinks=True)  # the same machine, config.local and all
    for wiped in (".dvc/cache", "data", "result"):
        shutil.rmtree(repo / wiped)
    before = runs(log)
    dvc(repo, "pull", environ=aws_env(log))
    for name, data in DATA.items():
        assert (repo / "data" / name).read_bytes() == data, name
    summary = "result/summary.txt"
    assert (repo / summary).read_bytes() == (origin / summary).read_bytes()
    assert "in sync" in dvc(repo, "status", "--cloud", environ=aws_env(log))
    assert runs(log) == before


def test_clone_needs_credentials_from_its_own_machine(origin, log, tmp_path):
    repo = clone(origin, tmp_path / "repo")
    assert not (repo / ".dvc" / "config.local").exists()
    code, output = dvc_status(repo, "pull", environ=aws_env(log))
    assert code != 0 and "Unable to locate credentials" in output


def test_repro_pull_restores_the_stage_from_the_run_cache_without_running(origin, log, tmp_path):
    """Another machine with the code but without dvc.lock: `dvc repro --pull` pulls the data,
    finds the stage in the pushed run cache and checks its outputs out instead of running."""
    repo = clone(origin, tmp_path / "repo")
    (repo / "dvc.lock").unlink()
    before = runs(log)
    output = dvc(repo, "repro", "--pull", environ=aws_env(log, credentials=True))
    assert "is cached - skipping run" in output and runs(log) == before
    summary = "result/summary.txt"
    assert (repo / summary).read_bytes() == (origin / summary).read_bytes()
    assert (repo / "dvc.lock").read_text() == (origin / "dvc.lock").read_text()


def test_pull_run_cache_restores_locked_outputs_and_feeds_repro(origin, log, tmp_path):
    """With dvc.lock committed, `dvc pull --run-cache` brings the data, the outputs and the
    run cache; a later `dvc repro` of a stage missing from the lock then restores it from
    that run cache, with no download and no run."""
    repo = clone(origin, tmp_path / "repo")
    environ = aws_env(log, credentials=True)
    before = runs(log)
    dvc(repo, "pull", "--run-cache", environ=environ)
    assert (repo / "result" / "summary.txt").read_bytes() == (
        origin / "result" / "summary.txt"
    ).read_bytes()
    assert "up to date" in dvc(repo, "repro", environ=environ)
    (repo / "dvc.lock").unlink()
    shutil.rmtree(repo / "result")
    assert "is cached - skipping run" in dvc(repo, "repro", environ=environ)
    assert runs(log) == before and (repo / "result" / "summary.txt").is_file()


def test_pull_run_cache_alone_does_not_fetch_outputs_of_unlocked_stages(origin, log, tmp_path):
    """What the README says about dvc 3: without dvc.lock, `dvc pull --run-cache` fetches the
    run-cache entries but not the outputs they name (use `dvc repro --pull`)."""
    repo = clone(origin, tmp_path / "repo")
    (repo / "dvc.lock").unlink()
    code, output = dvc_status(repo, "pull", "--run-cache", environ=aws_env(log, credentials=True))
    assert code != 0 and "No file hash info found" in output
    assert (repo / "data" / "a.txt").read_bytes() == DATA["a.txt"]
    assert not (repo / "result").exists()
    assert any((repo / ".dvc" / "cache" / "runs").rglob("*"))
