#!/usr/bin/env bash
# Compiles the Android core (Java 8 language level, no android.* imports) and its JUnit 5 tests with
# javac, runs them with the JUnit console launcher against the golden vectors, and prints a final
# "N passed, N failed" line. MCAD_GOLDEN_DIR / MCAD_GOLDEN_WORDPIECE_DIR / MCAD_GOLDEN_SENTENCEPIECE_DIR /
# MCAD_GOLDEN_HOST_TABLE_DIR point at other vectors (e.g. freshly
# regenerated ones); MCAD_CORE_CLASSES runs the tests against already compiled core classes (the APK's).
set -euo pipefail
cd "$(dirname "$0")"
JUNIT=${JUNIT_JAR:-/usr/share/java/junit-platform-console-standalone.jar}
GOLDEN=${MCAD_GOLDEN_DIR:-src/test/resources/golden}
GOLDEN_WORDPIECE=${MCAD_GOLDEN_WORDPIECE_DIR:-src/test/resources/golden_wordpiece}
GOLDEN_SENTENCEPIECE=${MCAD_GOLDEN_SENTENCEPIECE_DIR:-src/test/resources/golden_sentencepiece}
GOLDEN_HOST_TABLE=${MCAD_GOLDEN_HOST_TABLE_DIR:-src/test/resources/golden_host_table}
if ! command -v javac >/dev/null || [ ! -f "$JUNIT" ]; then
  echo "needs javac and JUnit 5's console launcher: apt-get install -y --no-install-recommends default-jdk-headless junit5" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
javac -nowarn --release 8 -Xlint:-options -d "$build/main" $(find src/main/java -name '*.java')
javac -nowarn --release 8 -Xlint:-options -cp "$build/main:$JUNIT" -d "$build/test" $(find src/test/java -name '*.java')
# The core's classes as shipped (e.g. taken back out of an APK's classes.dex) replace the fresh build at run time:
# the tests are compiled against the sources' API and run against the shipped code.
main="$build/main"
[ -n "${MCAD_CORE_CLASSES:-}" ] && main="$MCAD_CORE_CLASSES"
status=0
java -Dmcad.golden="$GOLDEN" -Dmcad.golden.wordpiece="$GOLDEN_WORDPIECE" -Dmcad.golden.sentencepiece="$GOLDEN_SENTENCEPIECE" -Dmcad.golden.hosttable="$GOLDEN_HOST_TABLE" -jar "$JUNIT" --class-path "$main:$build/test" --select-package ai.mcad.core \
  --disable-banner --details=tree > "$build/out.txt" 2>&1 || status=$?
cat "$build/out.txt"
passed=$(sed -n 's/.*\[ *\([0-9]*\) tests successful *\].*/\1/p' "$build/out.txt" | tail -1)
failed=$(sed -n 's/.*\[ *\([0-9]*\) tests failed *\].*/\1/p' "$build/out.txt" | tail -1)
echo "${passed:-0} passed, ${failed:-1} failed"
exit $status
