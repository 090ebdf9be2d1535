"""A Hugging Face Hub cache written the way `huggingface_hub` writes one, for offline tests of Hub ids.

    snapshot = add_model(cache_dir, "org/tiny", model_folder)   # cache_dir/models--org--tiny/snapshots/<commit>

Layout (huggingface_hub's cache rules): `models--{org}--{name}/blobs/<etag>` holds each file once, named by
its git blob sha1 (small files) or its sha256 (LFS files: weights); `snapshots/<commit>/<path>` are relative
symlinks to those blobs; `refs/<revision>` holds the commit a branch points at; `trees/<commit>.json` is the
tree listing the library caches to tell a complete snapshot from a partial one, written with its own function.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".model", ".parquet")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_model(cache_dir: Path, repo_id: str, folder: Path, revision: str = "main", commit: str | None = None,
              repo_type: str = "model") -> Path:
    """Put every file of `folder` into the cache as `repo_id` at `commit` (derived from the files when None)."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
    from huggingface_hub.file_download import repo_folder_name

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if commit is None:
        digest = hashlib.sha1()
        for p in files:
            digest.update(str(p.relative_to(folder)).encode() + p.read_bytes())
        commit = digest.hexdigest()
    storage = Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    snapshot = storage / "snapshots" / commit
    entries = {}
    for p in files:
        rel = p.relative_to(folder).as_posix()
        data = p.read_bytes()
        blob_id = _git_blob_sha1(data)
        lfs = rel.endswith(LFS_SUFFIXES)
        sha256 = hashlib.sha256(data).hexdigest() if lfs else None
        blob = storage / "blobs" / (sha256 if lfs else blob_id)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
        entries[rel] = TreeCacheEntry(size=len(data), blob_id=blob_id, lfs_sha256=sha256, lfs_size=len(data) if lfs else None)
    write_tree_cache(str(storage), commit, entries)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot
