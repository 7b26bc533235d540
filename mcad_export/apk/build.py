"""The demo app's sources and bundled assets -> a signed, aligned, verified APK (no Gradle, no network).

aapt2 compiles and links the resources (assets stored uncompressed where they are memory-mapped), javac compiles the
app and core sources against android.jar and ONNX Runtime's Java API, D8 dexes them, ONNX Runtime's native libraries
go in per ABI, zipalign aligns and apksigner signs (v2 + v3) and verifies. Only src/main/java is compiled: the
Gradle-only runtimes (src/litert/java) need libraries this build does not have.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompileError
from .toolchain import Toolchain

PACKAGE = "ai.mcad.demo"
MIN_SDK, TARGET_SDK = 26, 35  # as app/build.gradle.kts; ONNX Runtime's AAR needs 24
VERSION_CODE, VERSION_NAME = 1, "0.1"
NO_COMPRESS = (".onnx", ".tflite", ".npy", ".bin", ".data")  # memory-mapped files stay stored
ABIS = ("arm64-v8a", "x86_64")


@dataclass
class Keystore:
    path: Path
    alias: str
    password: str
    debug: bool


def run(command: list, what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"APK build: {what} could not run ({e})") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        error = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no message")
        raise CompileError(f"APK build: {what} failed: {error.strip()[:300]}")
    return proc.stdout + proc.stderr


def debug_keystore(chain: Toolchain, folder: Path) -> Keystore:
    """The toolkit's own debug key (made once, kept beside the provisioned toolchain so `adb install -r` of a
    rebuilt APK keeps the same signature)."""
    path = folder / "debug.keystore"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".debug.keystore.{id(path)}"
        tmp.unlink(missing_ok=True)
        run(
            [chain.keytool, "-genkeypair", "-keystore", tmp, "-storetype", "PKCS12", "-alias", "mcaddebug",
             "-keyalg", "RSA", "-keysize", "2048", "-validity", "10000", "-storepass", "android",
             "-keypass", "android", "-dname", "CN=mcad-export debug, O=mcad-export, C=US"],
            "keytool (debug key)",
        )  # fmt: skip
        tmp.replace(path)
    return Keystore(path, "mcaddebug", "android", debug=True)


def _manifest(app: Path, work: Path) -> Path:
    """The app's manifest with its package set (Gradle sets it from `namespace`; aapt2 needs it written)."""
    text = (app / "app" / "src" / "main" / "AndroidManifest.xml").read_text(encoding="utf-8")
    if "package=" not in text:
        text = re.sub(r"<manifest\b", f'<manifest package="{PACKAGE}"', text, count=1)
    out = work / "AndroidManifest.xml"
    out.write_text(text, encoding="utf-8")
    return out


def _sources(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.java"))


def build(app: Path, work: Path, chain: Toolchain, keystore: Keystore, abis=ABIS, say=lambda m: None) -> Path:
    main = app / "app" / "src" / "main"
    say("APK: compiling and linking resources (aapt2)")
    run([chain.aapt2, "compile", "--dir", main / "res", "-o", work / "res.zip"], "aapt2 compile")
    gen = work / "gen"
    gen.mkdir()
    link = [chain.aapt2, "link", "-I", chain.android_jar, "--manifest", _manifest(app, work), "--java", gen]
    link += ["-A", main / "assets", "--min-sdk-version", MIN_SDK, "--target-sdk-version", TARGET_SDK]
    link += ["--version-code", VERSION_CODE, "--version-name", VERSION_NAME, "--warn-manifest-validation"]
    # Not `-0 .onnx`: Debian's aapt2 (2.19) takes a file's extension from its *first* dot, so
    # text_encoder.dyn.dynamic.onnx (".dyn.dynamic.onnx") would stay compressed; the regex matches the real suffix.
    link += ["--no-compress-regex", r"\.(" + "|".join(s.lstrip(".") for s in NO_COMPRESS) + r")$"]
    run([*link, "-o", work / "base.apk", work / "res.zip"], "aapt2 link")

    say("APK: compiling the app and core (javac) against android.jar and ONNX Runtime's Java API")
    aar = zipfile.ZipFile(chain.onnxruntime_aar)
    ort_classes = work / "onnxruntime-classes.jar"
    ort_classes.write_bytes(aar.read("classes.jar"))
    classes = work / "classes"
    sources = _sources(main / "java", app / "core" / "src" / "main" / "java", gen)
    run(
        [chain.javac, "-source", "8", "-target", "8", "-encoding", "UTF-8", "-nowarn", "-Xlint:-options",
         "-bootclasspath", chain.android_jar, "-classpath", ort_classes, "-d", classes, *sources],
        "javac",
    )  # fmt: skip
    app_jar = work / "app-classes.jar"
    run([chain.jar_tool, "cf", app_jar, "-C", classes, "."], "jar")

    say("APK: dexing (D8)")
    dex = work / "dex"
    dex.mkdir()
    run(
        [*chain.d8, "--release", "--min-api", MIN_SDK, "--lib", chain.android_jar, "--output", dex, app_jar,
         ort_classes],
        "d8",
    )  # fmt: skip
    say(f"APK: adding classes.dex and ONNX Runtime's native libraries ({', '.join(abis)})")
    with zipfile.ZipFile(work / "base.apk", "a", compression=zipfile.ZIP_DEFLATED) as apk:
        for path in sorted(dex.glob("*.dex")):
            apk.write(path, path.name)
        for abi in abis:
            libs = [n for n in aar.namelist() if n.startswith(f"jni/{abi}/") and n.endswith(".so")]
            if not libs:
                raise CompileError(f"APK build: ONNX Runtime's AAR has no native library for {abi}")
            for name in libs:
                apk.writestr(f"lib/{abi}/{Path(name).name}", aar.read(name))
    aar.close()

    say("APK: aligning (zipalign) and signing (apksigner, v2 + v3)")
    run([chain.zipalign, "-f", "-p", "4", work / "base.apk", work / "aligned.apk"], "zipalign")
    signed = work / "signed.apk"
    _sign(chain, keystore, work / "aligned.apk", signed)
    return signed


def _sign(chain: Toolchain, keystore: Keystore, aligned: Path, signed: Path) -> None:
    import os

    env = dict(os.environ, MCAD_KS_PASS=keystore.password)  # the password never appears on a command line
    command = [
        chain.apksigner, "sign", "--ks", keystore.path, "--ks-key-alias", keystore.alias,
        "--ks-pass", "env:MCAD_KS_PASS", "--key-pass", "env:MCAD_KS_PASS", "--min-sdk-version", str(MIN_SDK),
        "--out", signed, aligned,
    ]  # fmt: skip
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise CompileError(f"APK build: apksigner sign failed: {(lines[-1] if lines else 'no message')[:300]}")


def verify(chain: Toolchain, apk: Path) -> dict:
    """apksigner verify (v2 or v3 must hold) and zipalign -c: the numbers the record keeps."""
    out = run([chain.apksigner, "verify", "--verbose", "--print-certs", apk], "apksigner verify")
    schemes = {v: bool(re.search(rf"Verified using v{v} scheme[^:]*: true", out)) for v in (1, 2, 3)}
    if not (schemes[2] or schemes[3]):
        raise CompileError(f"APK build: {apk.name} is not signed with APK Signature Scheme v2 or v3")
    cert = re.search(r"certificate SHA-256 digest: ([0-9a-f]{64})", out)
    run([chain.zipalign, "-c", "-p", "4", apk], "zipalign -c")
    return {"schemes": [f"v{v}" for v, ok in schemes.items() if ok], "certificate_sha256": cert[1] if cert else None}
