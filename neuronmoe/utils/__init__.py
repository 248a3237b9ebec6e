"""Small shared helpers: atomic file writes, manifests, hashing, devices."""
from neuronmoe.utils.io import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
    sha256_file,
)
from neuronmoe.utils.manifest import Manifest, load_manifest, package_versions, write_manifest

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_dir",
    "read_json",
    "sha256_file",
    "Manifest",
    "load_manifest",
    "write_manifest",
    "package_versions",
]
