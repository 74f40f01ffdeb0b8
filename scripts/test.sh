#!/usr/bin/env bash
# Install everything the test suite needs, then run it. CI (.ci/run) calls this script;
# extra arguments go to pytest (e.g. `bash scripts/test.sh -k dicom`).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check -e ".[train,dev]"

# The browser tests drive Debian's chromium through Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "scripts/test.sh: chromium is missing; install Debian's chromium package to run the browser tests" >&2
    fi
fi

# De-identification: Tesseract reads burned-in text, dciodvfy (dicom3tools) checks the
# DICOM objects ingest writes.
for pair in tesseract:tesseract-ocr dciodvfy:dicom3tools; do
    if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair##*:}" >/dev/null
        else
            echo "scripts/test.sh: ${pair%%:*} is missing; install Debian's ${pair##*:}" >&2
        fi
    fi
done

exec python3 -m pytest "$@"
