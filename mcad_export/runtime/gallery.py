"""`mcad-export index DIR`: embed a folder of images with the image encoder and save a gallery index.

Unreadable files are skipped and counted, never fatal; nothing is replaced unless the whole index
was built (staged folder, then one rename). Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import locks_folder, replaced_directory
from ..contract import GALLERY_DIR, INDEX_DIR
from ..errors import GalleryIndexError, InputError
from ..guard import verified_artifact
from ..manifest import read_manifest
from .encoders import open_encoder, ort_optimization
from .images import UnreadableImage, list_images, read_image
from .index import GalleryIndex
from .preprocess import preprocess_image
from .search import select_artifact


def heldout_gallery(root: Path, manifest: dict) -> Path:
    """The embedded student's held-out scenes, written as PNGs once (the gallery the gate measured)."""
    evaluation = manifest["evaluation"]
    if evaluation.get("samples") != "scenes":
        raise InputError("this student has no built-in gallery; give one with --images FOLDER (jpg/png)")
    from ..data.scenes import write_gallery

    folder = root / GALLERY_DIR
    existing = len(list_images(folder)) if folder.is_dir() else 0
    if existing != evaluation["count"]:
        with replaced_directory(folder) as stage:
            write_gallery(evaluation["split"], evaluation["count"], stage)
    return folder


@locks_folder("index")
def build_gallery_index(
    directory,
    images=None,
    kind: str = "flat",
    artifact: str | None = None,
    batch: int = 32,
    threads: int = 0,
    progress=None,
) -> dict:
    """Returns the index metadata (index.json) including `skipped` unreadable files.

    Images are embedded by the fp32 ONNX image encoder unless `artifact` names another: the gallery is
    the reference every text encoder variant is ranked against, whatever `bench` deploys."""
    root = Path(directory)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"--batch must be a positive number of images, got {batch}")
    manifest = read_manifest(root)
    folder = Path(images) if images else heldout_gallery(root, manifest)
    files = list_images(folder)
    if not files:
        raise GalleryIndexError(f"{folder} has no image files to index")
    encoder = select_artifact(manifest, artifact, encoder="image", default_deployed=False)
    embed = open_encoder(verified_artifact(root, encoder), encoder["runtime"], threads, ort_optimization(encoder))
    embeddings, kept, skipped = [], [], []
    for start in range(0, len(files), batch):
        pixels, names = [], []
        for path in files[start : start + batch]:
            try:
                pixels.append(preprocess_image(read_image(path), manifest["image"]))
                names.append((path, path.relative_to(folder).as_posix()))
            except UnreadableImage as e:
                skipped.append({"path": str(path), "reason": str(e)})
        if pixels:
            rows = embed(np.stack(pixels).astype(np.float32))
            finite = np.isfinite(rows).all(axis=1)
            for (path, _), ok in zip(names, finite):
                if not ok:
                    skipped.append({"path": str(path), "reason": "the image encoder returned non-finite numbers"})
            embeddings.append(rows[finite])
            kept += [name for (_, name), ok in zip(names, finite) if ok]
        if progress:
            progress(min(start + batch, len(files)), len(files))
    if not kept:
        raise GalleryIndexError(
            f"none of the {len(files)} images in {folder} could be read (first: {skipped[0]['reason']})"
        )
    vectors = np.concatenate(embeddings)
    index_dir = root / INDEX_DIR
    # Paths inside the export folder stay relative so the folder (and the app bundle) can move.
    folder_abs = folder.resolve()
    inside = folder_abs.is_relative_to(root.resolve())
    stored_root = os.path.relpath(folder_abs, index_dir.resolve()) if inside else str(folder_abs)
    index = GalleryIndex.build(vectors, kept, kind, root=stored_root)
    meta = {
        "image_encoder": {"path": encoder["path"], "sha256": encoder["sha256"]},
        "source": os.fsencode(str(folder_abs)).decode("utf-8", "backslashreplace"),
        "scanned": len(files),
        "skipped": len(skipped),
        "skipped_files": skipped[:20],
    }
    with replaced_directory(index_dir) as stage:
        index.save(stage, extra_meta=meta)
    return GalleryIndex.read_meta(index_dir)
