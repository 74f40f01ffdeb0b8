#!/usr/bin/env python3
"""Re-vendor onnxruntime-web (the browser runtime of `eutirads export-web`) from the npm
registry, checking the tarball against its pinned sha512 integrity.

    python scripts/vendor_web_runtime.py          # fetch with `npm pack`, check, copy in
    python scripts/vendor_web_runtime.py --check  # offline: the vendored files match VENDOR.json

Only the files the page needs are kept: the wasm-only ES-module bundle (runtime and
Emscripten glue in one file) and its single-threaded/threaded SIMD wasm binary. To move
to another version, change VERSION and INTEGRITY (from `npm view onnxruntime-web@X
dist.integrity`), run the script, run the browser tests, commit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
INTEGRITY = ("sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1Sig"
             "qR4CXAfKYQ==")
LICENSE = "MIT"
FILES = ("dist/ort.wasm.bundle.min.mjs", "dist/ort-wasm-simd-threaded.wasm")
TARGET = (Path(__file__).resolve().parents[1] / "src" / "eutirads" / "export" / "webpage"
          / "vendor" / PACKAGE)
# The npm package ships no licence file; its package.json says MIT and every file's
# header says "Copyright (c) Microsoft Corporation. Licensed under the MIT License."
MIT_TEXT = """MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp,
                        "--silent"], check=True, stdout=subprocess.DEVNULL)
        tarball = Path(tmp) / f"{PACKAGE}-{VERSION}.tgz"
        got = _integrity(tarball)
        if got != INTEGRITY:
            sys.exit(f"{tarball.name}: integrity {got} is not the pinned {INTEGRITY}; refusing")
        TARGET.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for name in FILES:
                member = archive.getmember(f"package/{name}")
                data = archive.extractfile(member).read()
                (TARGET / Path(name).name).write_bytes(data)
    (TARGET / "LICENSE.txt").write_text(MIT_TEXT, encoding="utf-8")
    record = {"package": PACKAGE, "version": VERSION, "integrity": INTEGRITY,
              "license": LICENSE, "source": f"npm pack {PACKAGE}@{VERSION}",
              "files": {Path(n).name: _sha256(TARGET / Path(n).name) for n in FILES}}
    (TARGET / "VENDOR.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"vendored {PACKAGE} {VERSION} into {TARGET}")


def check() -> int:
    """0 when every vendored file matches the SHA-256 recorded at vendoring time."""
    record = json.loads((TARGET / "VENDOR.json").read_text(encoding="utf-8"))
    bad = [name for name, digest in record["files"].items()
           if not (TARGET / name).is_file() or _sha256(TARGET / name) != digest]
    if record["version"] != VERSION or record["integrity"] != INTEGRITY:
        bad.append("VENDOR.json (pin differs from this script)")
    for name in bad:
        print(f"vendored file changed or missing: {name}", file=sys.stderr)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only verify the vendored files (offline)")
    args = parser.parse_args()
    if args.check:
        return check()
    vendor()
    return check()


if __name__ == "__main__":
    sys.exit(main())
