"""Real git and `dvc` commands in temporary repositories (shared by the DVC tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def env(extra: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a git/dvc child, with `drop` removed and `extra` set."""
    result = {k: v for k, v in os.environ.items() if k not in drop}
    # Stage commands call `python`: it must be this interpreter, with the project installed.
    result["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{result.get('PATH', '')}"
    result.update(DVC_NO_ANALYTICS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    result.update(extra or {})
    return result


def run_status(cwd: Path, *args: str, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(exit status, stdout and stderr together) of one command."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=dict(environ) if environ is not None else env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc.returncode, proc.stdout


def run(cwd: Path, *args: str, environ: Mapping[str, str] | None = None) -> str:
    """Output of one command that must succeed (AssertionError with its output if not)."""
    code, output = run_status(cwd, *args, environ=environ)
    if code:
        raise AssertionError(f"{' '.join(args)} failed ({code}):\n{output[-6000:]}")
    return output


def dvc(cwd: Path, *args: str, environ: Mapping[str, str] | None = None) -> str:
    return run(cwd, sys.executable, "-m", "dvc", *args, environ=environ)


def dvc_status(cwd: Path, *args: str, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(exit status, output) of a dvc command that may fail."""
    return run_status(cwd, sys.executable, "-m", "dvc", *args, environ=environ)


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def init(repo: Path) -> Path:
    """A new git repository with DVC initialised in it, committed."""
    repo.mkdir(parents=True, exist_ok=True)
    run(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    commit(repo, "dvc init")
    return repo
