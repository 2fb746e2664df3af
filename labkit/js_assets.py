"""The JavaScript libraries bertviz's views need, kept on disk so that the views draw offline.

bertviz's head and model views load d3 and jQuery through require.js from a CDN; offline they draw nothing. The lab
fetches the two libraries once, at set-up, from the npm registry (pinned versions, each tarball checked against the
registry's sha512), and keeps each minified file with its licence in `JS_DIR`, inside the Python environment.
`labkit.viz.bertviz_views` then writes them into the view's own cell, before bertviz's script.

    python -m labkit.js_assets      # fetch what is missing (python3 lab.py does this at set-up)
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Library", "LIBRARIES", "JS_DIR", "fetch", "library_source"]

JS_DIR = Path(sys.prefix) / "share" / "labkit" / "js"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Library:
    """One npm package's minified file and licence, at a pinned version with the registry's sha512 of its tarball."""

    name: str
    version: str
    file: str  # inside the tarball's package/ folder
    licence: str  # the licence file inside package/, and its name
    licence_name: str
    integrity: str

    @property
    def path(self) -> Path:
        return JS_DIR / f"{self.name}-{self.version}.min.js"

    @property
    def licence_path(self) -> Path:
        return JS_DIR / f"{self.name}-{self.version}.LICENSE.txt"

    @property
    def tarball(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name}-{self.version}.tgz"


# bertviz 1.4.1 asks for d3 5.7.0 and jQuery 2.0.0; npm has no jQuery 2.0.0, 2.2.4 is the last 2.x release.
LIBRARIES = {
    "d3": Library("d3", "5.7.0", "dist/d3.min.js", "LICENSE", "BSD-3-Clause",
                  "sha512-8KEIfx+dFm8PlbJN9PI0suazrZ41QcaAufsKE9PRcqYPWLngHIyWJZX96n6IQKePGgeSu0l7rtlueSSNq8Zc3g=="),
    "jquery": Library("jquery", "2.2.4", "dist/jquery.min.js", "LICENSE.txt", "MIT",
                      "sha512-lBHj60ezci2u1v2FqnZIraShGgEXq35qCzMv4lITyHGppTnA13rwR0MgwyNJh9TnDs3aXUvd1xjAotfraMHX/Q=="),
}


def _check_integrity(library: Library, data: bytes) -> None:
    algorithm, expected = library.integrity.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise ValueError(f"{library.tarball}: {algorithm} {actual} does not match the pinned {expected}; not using it")


def fetch(timeout_s: float = 30) -> list[Path]:
    """Download, check and unpack every library missing from `JS_DIR`; returns the files written."""
    written = []
    for library in LIBRARIES.values():
        if library.path.exists() and library.licence_path.exists():
            continue
        with urllib.request.urlopen(library.tarball, timeout=timeout_s) as response:
            data = response.read()
        _check_integrity(library, data)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member, target in ((library.file, library.path), (library.licence, library.licence_path)):
                content = tar.extractfile(f"package/{member}")
                if content is None:
                    raise ValueError(f"{library.tarball} holds no file package/{member}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.read())
                written.append(target)
    return written


def library_source(name: str) -> str:
    """The minified source of library `name` ("d3" or "jquery"); FileNotFoundError saying how to fetch it."""
    if name not in LIBRARIES:
        raise ValueError(f"name must be one of {list(LIBRARIES)}, got {name!r}")
    library = LIBRARIES[name]
    if not library.path.exists():
        raise FileNotFoundError(f"{library.name} {library.version} (needed by bertviz's views) is not in {JS_DIR}: run "
                                "`python -m labkit.js_assets` once while the npm registry is reachable "
                                "(`python3 lab.py` does it at set-up)")
    return library.path.read_text(encoding="utf-8")


if __name__ == "__main__":
    try:
        for path in fetch():
            print(f"labkit.js_assets: wrote {path}")
    except (OSError, ValueError) as error:  # unreachable registry (URLError is an OSError), or a file failing its check
        sys.exit(f"labkit.js_assets: error: {error} (bertviz's views need these files; everything else works without "
                 f"them)")
    for library in LIBRARIES.values():
        print(f"labkit.js_assets: {library.name} {library.version} ({library.licence_name}) at {library.path}")
