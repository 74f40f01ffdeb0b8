#!/usr/bin/env bash
# Install everything the test suite needs, then run it. CI (.ci/run) calls this script;
# extra arguments go to pytest (e.g. `bash scripts/test.sh -k dicom`).
#
# Two passes: the whole suite on SQLite, then the web suite (tests/web, browser tests left
# out: they test the pages, not the database) against a throw-away PostgreSQL server
# started by tests/postgres_server.py. EUTIRADS_TEST_POSTGRES=0 skips the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start for real, installed in one apt-get step on a fresh
# machine (CI runs as root). One package per line; add yours here.
DEBIAN_PACKAGES=(
    chromium            # browser tests (Playwright drives Debian's chromium)
    fonts-dejavu-core   # text rendering in reports and phantom screens
    tesseract-ocr       # OCR redaction of burned-in text
    dcmtk               # storescu/echoscu: DICOM network tests of `eutirads listen`
    dicom3tools         # independent DICOM validation (dciodvfy)
    orthanc             # the PACS of the DICOMweb and STOW-RS tests
    orthanc-dicomweb    # Orthanc's DICOMweb plugin
    postgresql          # the production database, second test pass
    libpango-1.0-0      # PDF reports (WeasyPrint)
    libpangoft2-1.0-0   # PDF reports (WeasyPrint)
    gettext             # msgfmt: a test checks the committed .mo catalogues match their .po
)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "scripts/test.sh: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            "${missing[@]}" >/dev/null
    else
        echo "scripts/test.sh: missing Debian packages ${missing[*]}; the tests that need them skip, naming the reason" >&2
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[train,dev]"

status=0
python3 -m pytest "$@" || status=$?

if [ "${EUTIRADS_TEST_POSTGRES:-1}" != 0 ]; then
    python3 tests/postgres_server.py "$@" tests/web -m "not browser" || status=$?
fi
exit "$status"
