"""`mcad-export apk`: the demo app built offline around a bundle, then checked as an installer and a reviewer would:
signature (v2+), alignment, the manifest (package, launcher activity, SDK levels), every bundled file present with
its sha256, memory-mapped files stored uncompressed, ONNX Runtime's native libraries per ABI, and the core classes
taken back out of classes.dex passing the core's golden JUnit suite (the shipped code is the tested code)."""

import hashlib
import json
import os
import shutil
import subprocess
import zipfile

import pytest

from mcad_export import contract
from mcad_export.cli import main

from .conftest import REPO, cli, tiny_options

APP = REPO / "android_demo"


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory):
    """A tiny run's folder and a copy of the demo app, with the APK built (about 10 s)."""
    base = tmp_path_factory.mktemp("apk")
    x, app = base / "x", base / "app"
    shutil.copytree(tiny_run[0], x)
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build", ".gradle"))
    code = main(["apk", str(x), "--app", str(app)])
    assert code == 0
    return x, app, json.loads((x / contract.APK_RECORD).read_text())


def test_the_apk_is_signed_aligned_and_recorded(built):
    x, _, record = built
    apk = x / contract.APK_FILE
    assert (
        record["sha256"] == hashlib.sha256(apk.read_bytes()).hexdigest() and record["size_bytes"] == apk.stat().st_size
    )
    verify = subprocess.run(["apksigner", "verify", "--verbose", str(apk)], capture_output=True, text=True)
    assert verify.returncode == 0 and "Verified using v2 scheme (APK Signature Scheme v2): true" in verify.stdout
    assert subprocess.run(["zipalign", "-c", "-p", "4", str(apk)]).returncode == 0
    assert (record["min_sdk"], record["target_sdk"], record["abis"]) == (26, 35, ["arm64-v8a", "x86_64"])
    assert set(record["signature"]["schemes"]) >= {"v2"} and len(record["signature"]["certificate_sha256"]) == 64
    assert record["toolchain"]["source"] in ("provisioned", "android-sdk") and "D8" in record["toolchain"]["d8"]
    sizes = record["size_breakdown_bytes"]
    assert sizes["native_libraries"] > 10 * 2**20 and sizes["models"] > 0 and sizes["dex"] > 0
    with zipfile.ZipFile(apk) as z:
        assert sum(sizes.values()) == sum(i.compress_size for i in z.infolist())


def test_an_installer_sees_the_app_and_every_bundled_file(built):
    from androguard.core.apk import APK
    from loguru import logger

    logger.remove()  # androguard logs every chunk it parses
    x, app, _ = built
    apk = x / contract.APK_FILE
    parsed = APK(str(apk))
    assert parsed.get_package() == "ai.mcad.demo" and parsed.get_main_activity() == "ai.mcad.demo.MainActivity"
    assert (parsed.get_min_sdk_version(), parsed.get_target_sdk_version()) == ("26", "35")
    assert parsed.is_signed_v2()
    bundle = json.loads((app / "app/src/main/assets/mcad/bundle.json").read_text())
    with zipfile.ZipFile(apk) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert bundle["files"], "the bundle lists its files"
        for f in bundle["files"]:
            name = f"assets/mcad/{f['path']}"
            assert hashlib.sha256(z.read(name)).hexdigest() == f["sha256"], name
        assert z.read("assets/mcad/bundle.json") == (app / "app/src/main/assets/mcad/bundle.json").read_bytes()
        mapped = [n for n in infos if n.endswith((".onnx", ".data", ".npy"))]
        assert mapped and all(infos[n].compress_type == zipfile.ZIP_STORED for n in mapped), mapped
        for abi in ("arm64-v8a", "x86_64"):
            assert f"lib/{abi}/libonnxruntime.so" in infos and f"lib/{abi}/libonnxruntime4j_jni.so" in infos
        assert "classes.dex" in infos


def test_the_shipped_core_classes_pass_the_golden_suite(built, tmp_path):
    x, _, _ = built
    with zipfile.ZipFile(x / contract.APK_FILE) as z:
        (tmp_path / "classes.dex").write_bytes(z.read("classes.dex"))
    # Debian's enjarify wrapper runs the first `python3` on PATH, which must be the one its package is installed
    # for (a venv's or pyenv's python3 is not): name Debian's.
    subprocess.run(
        ["enjarify", "-f", "-o", str(tmp_path / "shipped.jar"), str(tmp_path / "classes.dex")],
        check=True,
        capture_output=True,
        env=dict(os.environ, PYTHON="/usr/bin/python3"),
    )
    classes = tmp_path / "classes"
    with zipfile.ZipFile(tmp_path / "shipped.jar") as z:
        core = [n for n in z.namelist() if n.startswith("ai/mcad/core/")]
        assert len(core) >= 10, core
        z.extractall(classes, members=core)
    # enjarify gives an interface's static methods modifiers the JVM refuses (ClassFormatError 0x9): that one
    # interface comes from javac; every other core class is the one dexed into the APK.
    subprocess.run(
        ["javac", "-nowarn", "--release", "8", "-Xlint:-options", "-d", str(tmp_path / "iface"),
         "-sourcepath", str(APP / "core/src/main/java"), str(APP / "core/src/main/java/ai/mcad/core/TextTokenizer.java")],
        check=True,
    )  # fmt: skip
    shutil.copy(tmp_path / "iface/ai/mcad/core/TextTokenizer.class", classes / "ai/mcad/core/TextTokenizer.class")
    proc = subprocess.run(
        ["bash", str(APP / "core/test.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, MCAD_CORE_CLASSES=str(classes)),
    )
    last = proc.stdout.strip().splitlines()[-1]
    passed, failed = (int(w) for w in last.replace(",", "").split()[::2][:2])
    assert proc.returncode == 0 and failed == 0 and passed >= 400, proc.stdout[-2000:]


def test_a_missing_toolchain_piece_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys, monkeypatch):
    x, app = tmp_path / "x", tmp_path / "app"
    shutil.copytree(tiny_run[0], x)
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build", ".gradle"))
    monkeypatch.setenv("MCAD_ANDROID_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    code, _, err = cli(capsys, "apk", x, "--app", app)
    assert code == 7 and len(err.splitlines()) == 1, err
    assert "ONNX Runtime's Android AAR not found" in err and "mcad_export.apk.provision" in err
    assert not (x / contract.APK_DIR).exists() and not (app / "app/src/main/assets").exists()


def test_an_android_sdk_is_used_when_the_user_has_one(tmp_path, monkeypatch):
    from mcad_export.apk.provision import piece_path
    from mcad_export.apk.toolchain import find_toolchain

    sdk = tmp_path / "sdk"
    tools, platform = sdk / "build-tools" / "35.0.0", sdk / "platforms" / "android-35"
    tools.mkdir(parents=True)
    platform.mkdir(parents=True)
    for tool in ("aapt2", "zipalign", "apksigner"):
        (tools / tool).symlink_to(shutil.which(tool))
    (tools / "d8").write_text(f'#!/bin/sh\nexec java -cp {piece_path("d8")} com.android.tools.r8.D8 "$@"\n')
    (tools / "d8").chmod(0o755)
    (platform / "android.jar").symlink_to(piece_path("android-jar"))
    monkeypatch.setenv("ANDROID_HOME", str(sdk))
    chain = find_toolchain()
    assert chain.source == "android-sdk" and chain.android_api == 35
    assert chain.aapt2 == str(tools / "aapt2") and chain.d8 == [str(tools / "d8")]
    assert "3.3.28" in chain.versions["d8"]
    (tools / "aapt2").unlink()
    with pytest.raises(Exception, match="aapt2 not found; install it with the SDK manager"):
        find_toolchain()


def test_a_user_keystore_needs_its_alias_and_password(built, tmp_path, capsys):
    x, app, _ = built
    ks = tmp_path / "release.p12"
    ks.write_bytes(b"not a keystore")
    code, _, err = cli(capsys, "apk", x, "--app", app, "--keystore", ks)
    assert code == 2 and "--keystore needs --keystore-alias and --keystore-pass-env" in err, err


def test_the_report_shows_the_apk(built, capsys):
    x, _, record = built
    assert cli(capsys, "report", x)[0] == 0
    report = (x / contract.REPORT_MD).read_text()
    assert "## Android APK" in report and record["sha256"] in report and "native libraries" in report


def test_run_builds_the_apk_as_its_last_stage_and_resumes(tiny_run, tmp_path, tiny_open_clip_config):
    from mcad_export.options import BundleOptions
    from mcad_export.pipeline import run_pipeline

    x, app = tmp_path / "x", tmp_path / "app"
    shutil.copytree(tiny_run[0], x)
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build", ".gradle"))
    options = tiny_options(x, tiny_open_clip_config, tiny_run[1], bundle=BundleOptions(app=app, apk=True))
    first = run_pipeline(options)
    # --apk narrows bench to ONNX Runtime's encoders (the offline build's runtime), so bench and report rerun once
    assert (
        first.ran == ["bench", "report", "bundle", "apk"]
        and first.bench["artifacts"]["text"]["runtime"] == "onnxruntime"
        and first.apk["sha256"] == json.loads((x / contract.APK_RECORD).read_text())["sha256"]
    )
    again = run_pipeline(options)
    assert again.ran == [] and "apk" in again.skipped and again.apk["sha256"] == first.apk["sha256"]
    # A bundled file deleted from the app: bundle puts it back, and the APK is built again.
    next((app / "app/src/main/assets/mcad/thumbs").iterdir()).unlink()
    third = run_pipeline(options)
    assert third.ran == ["bundle", "apk"] and third.bundle["written"] == 1


def test_a_bundle_the_offline_build_cannot_run_is_refused_in_one_line(tiny_copy, tmp_path, capsys, monkeypatch):
    import mcad_export.bundle

    # What bundle says for a student whose fastest gate-passing text encoder is a TFLite file (MobileCLIP2's).
    litert = {"encoders": {"text": {"runtime": "litert", "accelerator": "CPU", "source": "tflite/text_encoder.tflite"}}}
    monkeypatch.setattr(mcad_export.bundle, "bundle", lambda *a, **k: litert)
    code, _, err = cli(capsys, "apk", tiny_copy, "--app", tmp_path)
    assert code == 7 and len(err.splitlines()) == 1, err
    assert "runs on litert (CPU), but this offline build has ONNX Runtime's CPU build only" in err
    assert not (tiny_copy / contract.APK_DIR).exists()
