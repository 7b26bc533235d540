"""`mcad-export apk`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render
from .common import (
    _status,
)

NAME = "apk"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "apk",
        help="bundle, then build, sign and verify the Android demo's APK (offline)",
        description="Bundles DIR into APP's assets (as `bundle` does), then builds mcad-demo-debug.apk from the app's "
        "sources without Gradle: aapt2, javac against android.jar and ONNX Runtime's Java API, D8, ONNX Runtime's "
        "native libraries (arm64-v8a, x86_64), zipalign, apksigner (v2 + v3), then verifies the signature and the "
        "alignment. Writes DIR/apk/mcad-demo-debug.apk and DIR/apk/apk.json (sha256, size, SDK levels, ABIs, "
        "signature, toolchain, size breakdown). Uses ANDROID_HOME's build-tools and platform when set, else the "
        "toolchain `python -m mcad_export.apk.provision` put in the cache; a missing piece exits 7. Install with "
        "`adb install -r DIR/apk/mcad-demo-debug.apk`.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has an index (mcad-export index)")
    p.add_argument("--app", type=Path, required=True, help="the Android demo folder (android_demo in this repo)")
    p.add_argument("--target", dest="target_for_bundle", metavar="T", help="as for bundle (default: the CPU)")
    p.add_argument("--keystore", type=Path, metavar="FILE", help="sign with this keystore (default: a debug key)")
    p.add_argument("--keystore-alias", metavar="ALIAS", help="the key's alias in --keystore")
    p.add_argument("--keystore-pass-env", metavar="VAR", help="the environment variable holding --keystore's password")
    p.add_argument("--allow-ungated", action="store_true", help="as for bundle")


def run(args, console) -> dict:
    from ..apk import build_apk, user_keystore

    keystore = user_keystore(args.keystore, args.keystore_alias, args.keystore_pass_env) if args.keystore else None
    with _status(console, "building the APK") as say:
        record = build_apk(
            args.dir,
            args.app,
            target=args.target_for_bundle,
            keystore=keystore,
            allow_ungated=args.allow_ungated,
            progress=say,
        )
    render.apk(console, record, args.dir)
    return record
