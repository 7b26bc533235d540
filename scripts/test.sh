#!/usr/bin/env bash
# The test command: sets up on a fresh machine if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report test opens report.html in a real headless browser (Debian's chromium) and checks that Chinese captions
# are drawn with a CJK font (Debian's fonts-wqy-zenhei, 10 MB); the Android core's tests need javac and JUnit 5's
# console launcher (Debian's junit5).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/junit-platform-console-standalone.jar ] || need+=(junit5)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
# The offline Android toolchain the APK tests build with (Debian's aapt2/zipalign/apksigner/enjarify, and pinned,
# sha256-checked android.jar, D8 and ONNX Runtime's AAR in ~/.cache/mcad-export/android; a rerun reuses the cache).
.venv/bin/python -m mcad_export.apk.provision >/dev/null
# The Android core (plain Java) against its committed golden vectors; prints "N passed, N failed".
core_log=$(mktemp)
if ! bash android_demo/core/test.sh > "$core_log" 2>&1; then
  cat "$core_log"
  exit 1
fi
tail -1 "$core_log"
rm -f "$core_log"
# Lint, format and types (configured in pyproject.toml): a failure names the file and line.
.venv/bin/ruff check --quiet mcad_export tests benchmarks scripts
.venv/bin/ruff format --check --quiet mcad_export tests benchmarks scripts
.venv/bin/mypy --no-error-summary
# --durations: the slowest tests, so the suite's time (goal: well under 20 minutes on 2 cores) can be traced per test.
exec .venv/bin/python -m pytest -q --durations=25 "$@"
