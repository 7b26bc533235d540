"""`mcad-export apk DIR --app android_demo`: bundle the deployment, then build, sign and verify the demo's APK.

Writes DIR/apk/mcad-demo-debug.apk and DIR/apk/apk.json (contract.APK_FILE / APK_RECORD): the APK's sha256, size,
package, SDK levels, ABIs, signature, toolchain versions, and its size broken down (models, index, thumbnails,
native libraries, dex). The APK is built in the export's scratch area and published only after apksigner and
zipalign verify it; a missing toolchain piece is one line (exit 7) before anything is built.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..atomic import locks_folder, scratch_dir, staged_directory
from ..contract import APK_FILE, APK_RECORD
from ..errors import InputError

# The toolchain modules are imported inside the functions: `python -m mcad_export.apk.provision` must not find
# its own module already imported by this package.

APK_FORMAT = "mcad-apk/1"


def size_breakdown(apk: Path) -> dict:
    """Bytes stored in the APK per kind of content (compressed size, what a download and the disk pay)."""
    kinds = {
        "models": ("assets/mcad/models/",),
        "index": ("assets/mcad/index/",),
        "thumbnails": ("assets/mcad/thumbs/",),
        "tokenizer": ("assets/mcad/tokenizer/",),
        "native_libraries": ("lib/",),
    }
    out = dict.fromkeys([*kinds, "dex", "other"], 0)
    with zipfile.ZipFile(apk) as z:
        for info in z.infolist():
            kind = next((k for k, prefixes in kinds.items() if info.filename.startswith(prefixes)), None)
            if kind is None:
                kind = "dex" if info.filename.endswith(".dex") else "other"
            out[kind] += info.compress_size
    return out


def user_keystore(path, alias: str | None, password_env: str | None):
    import os

    from .build import Keystore

    if not alias or not password_env:
        raise InputError(
            "--keystore needs --keystore-alias and --keystore-pass-env (the variable holding its password)"
        )
    password = os.environ.get(password_env)
    if password is None:
        raise InputError(f"--keystore-pass-env {password_env}: that environment variable is not set")
    if not Path(path).is_file():
        raise InputError(f"--keystore {path} is not a file")
    return Keystore(Path(path), alias, password, debug=False)


@locks_folder("apk")
def build_apk(
    directory,
    app,
    *,
    target: str | None = None,
    keystore=None,
    abis: tuple[str, ...] = ("arm64-v8a", "x86_64"),
    allow_ungated: bool = False,
    progress=None,
) -> dict:
    from ..bundle import bundle
    from .build import MIN_SDK, PACKAGE, TARGET_SDK, build, debug_keystore, verify
    from .provision import cache_root
    from .toolchain import find_toolchain

    say = progress or (lambda message: None)
    root = Path(directory)
    chain = find_toolchain()  # every piece found before anything is written
    document = bundle(root, app, target=target, allow_ungated=allow_ungated, progress=say)
    text = document["encoders"]["text"]
    if (text["runtime"], text["accelerator"]) != ("onnxruntime", "CPU"):
        from ..errors import CompileError

        raise CompileError(
            f"the bundled text encoder {text['source']} runs on {text['runtime']} ({text['accelerator']}), but this "
            "offline build has ONNX Runtime's CPU build only: bench ONNX encoders (`mcad-export bench DIR --runtime "
            "onnxruntime`) or bundle the CPU target, or build this bundle with Gradle (android_demo/README.md); "
            "the bundle itself was written, no APK was"
        )
    keystore = keystore or debug_keystore(chain, cache_root())
    with scratch_dir(root) as work:
        signed = build(Path(app), Path(work), chain, keystore, abis, say)
        checks = verify(chain, signed)
        from ..guard import sha256_of

        record = {
            "format": APK_FORMAT,
            "path": APK_FILE,
            "sha256": sha256_of(signed),
            "size_bytes": signed.stat().st_size,
            "package": PACKAGE,
            "min_sdk": MIN_SDK,
            "target_sdk": TARGET_SDK,
            "abis": list(abis),
            "signature": {**checks, "key": "debug (made by mcad-export)" if keystore.debug else str(keystore.path)},
            "bundle": {"student": document["student"], "target": document["target"], "files": len(document["files"])},
            "size_breakdown_bytes": size_breakdown(signed),
            "toolchain": chain.versions,
            "runtimes": ["onnxruntime (CPU; the QNN and LiteRT paths need the Gradle build's libraries)"],
            "not_checked_here": "the APK was not run: no Android device or emulator on this machine",
        }
        with staged_directory(root) as stage:
            (stage / APK_FILE).parent.mkdir(parents=True)
            signed.replace(stage / APK_FILE)
            (stage / APK_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    say(f"APK: {root / APK_FILE} ({record['size_bytes'] / 2**20:.1f} MB, signed {'+'.join(checks['schemes'])})")
    return record


__all__ = ["build_apk", "size_breakdown", "user_keystore"]
