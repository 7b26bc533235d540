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
from .embedding import embed_files
from .encoders import open_encoder, ort_optimization
from .images import list_images
from .index import GalleryIndex
from .search import select_artifact


def heldout_gallery(root: Path, manifest: dict) -> Path:
    """The embedded student's held-out scenes, written as PNGs once (the gallery the gate measured)."""
    evaluation = manifest["evaluation"]
    from ..data.scenes import SCENE_KINDS, write_gallery

    if evaluation.get("samples") not in SCENE_KINDS:
        raise InputError("this student has no built-in gallery; give one with --images FOLDER (jpg/png)")

    folder = root / GALLERY_DIR
    existing = len(list_images(folder)) if folder.is_dir() else 0
    if existing != evaluation["count"]:
        with replaced_directory(folder, root=root) as stage:
            write_gallery(evaluation["split"], evaluation["count"], stage, language=SCENE_KINDS[evaluation["samples"]])
    return folder


LIST_SUFFIXES = (".txt", ".lst", ".list")


def image_sources(images) -> tuple[Path, list[Path]]:
    """`--images` as (the folder stored names are relative to, the files in index order).

    A folder (searched recursively), a glob pattern (`photos/**/*.jpg`; `**` recursive) or a list file (.txt,
    .lst, .list: one path per line, relative to the list's folder; blank lines and `#` comments ignored). Rows
    are in sorted path order for every form and every engine."""
    import glob

    from .images import IMAGE_SUFFIXES

    text = str(images)
    if any(c in text for c in "*?[") and not Path(text).exists():
        files = sorted(
            Path(p)
            for p in glob.glob(text, recursive=True)
            if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file()
        )
        if not files:
            raise GalleryIndexError(f"--images {text} matches no image files")
    elif Path(text).is_file() and Path(text).suffix.lower() in LIST_SUFFIXES:
        listing = Path(text)
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the image list {listing}: {e}") from None
        wanted = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        files = sorted({(listing.parent / w) if not Path(w).is_absolute() else Path(w) for w in wanted})
        if not files:
            raise GalleryIndexError(f"the image list {listing} names no files")
    else:
        folder = Path(text)
        return folder, list_images(folder)
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
    return root, [p.resolve() for p in files]


ENGINES = ("local", "ray")


@locks_folder("index")
def build_gallery_index(
    directory,
    images=None,
    kind: str = "flat",
    artifact: str | None = None,
    batch: int = 32,
    threads: int = 0,
    progress=None,
    engine: str = "local",
    engine_options: dict | None = None,
) -> dict:
    """Returns the index metadata (index.json) including `skipped` unreadable files.

    Images are embedded by the fp32 ONNX image encoder unless `artifact` names another: the gallery is
    the reference every text encoder variant is ranked against, whatever `bench` deploys. `engine` "ray"
    embeds on a Ray cluster (runtime/gallery_ray.py; same rows, same order, same skip list)."""
    root = Path(directory)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"--batch must be a positive number of images, got {batch}")
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    manifest = read_manifest(root)
    if images:
        folder, files = image_sources(images)
    else:
        folder = heldout_gallery(root, manifest)
        files = list_images(folder)
    if not files:
        raise GalleryIndexError(f"{folder} has no image files to index")
    encoder = select_artifact(manifest, artifact, encoder="image", default_deployed=False)
    model = verified_artifact(root, encoder)
    engine_record = None
    if engine == "ray":
        from .gallery_ray import embed_on_ray

        vectors, kept, skipped, engine_record = embed_on_ray(
            root, model, encoder, files, folder, manifest["image"], batch, engine_options or {}, progress
        )
    else:
        embed = open_encoder(model, encoder["runtime"], threads, ort_optimization(encoder), expected=encoder)
        parts, kept, skipped = [], [], []
        for start in range(0, len(files), batch):
            rows, names, bad = embed_files(embed, files[start : start + batch], folder, manifest["image"])
            if names:
                parts.append(rows)
            kept += names
            skipped += bad
            if progress:
                progress(min(start + batch, len(files)), len(files))
        vectors = np.concatenate(parts) if parts else None
    if not kept:
        raise GalleryIndexError(
            f"none of the {len(files)} images in {folder} could be read (first: {skipped[0]['reason']})"
        )
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
        **({"engine": engine_record} if engine_record else {"engine": {"name": "local"}}),
    }
    with replaced_directory(index_dir, root=root) as stage:
        index.save(stage, extra_meta=meta)
    return GalleryIndex.read_meta(index_dir)
