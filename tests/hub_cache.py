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


def add_model(
    cache_dir: Path,
    repo_id: str,
    folder: Path,
    revision: str = "main",
    commit: str | None = None,
    repo_type: str = "model",
) -> Path:
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
        entries[rel] = TreeCacheEntry(
            size=len(data), blob_id=blob_id, lfs_sha256=sha256, lfs_size=len(data) if lfs else None
        )
    write_tree_cache(str(storage), commit, entries)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot


def add_dataset(
    datasets_cache: Path,
    repo_id: str,
    splits: dict,
    config: str = "default",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> Path:
    """A Hub dataset as `load_dataset(repo_id, config)` leaves it in the datasets cache, prepared by datasets' own
    parquet builder: `{namespace}___{name}/{config}/0.0.0/{commit}/` with the arrow files and dataset_info.json,
    which is what an offline `load_dataset` (HF_HUB_OFFLINE=1) reads. `splits` maps split names to Datasets."""
    import shutil
    import tempfile

    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet

    namespace, name = repo_id.split("/")
    name = camelcase_to_snakecase(name)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, data in splits.items():
            files[split] = [str(Path(tmp) / f"{split}.parquet")]
            data.to_parquet(files[split][0])
        builder = Parquet(
            cache_dir=str(Path(tmp) / "build"),
            dataset_name=name,
            config_name=config,
            config_id=config,
            hash=commit,
            data_files=files,
        )
        builder.download_and_prepare()
        target = Path(datasets_cache) / f"{namespace}___{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "build" / name, target, dirs_exist_ok=True)
    return target / config / "0.0.0" / commit
