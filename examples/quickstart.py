"""Quickstart, end to end: a real registry on 127.0.0.1, four tiny images, one real push.

Run it through ``examples/quickstart.sh``, which installs what is missing first. It:

1. starts the CNCF distribution registry (``docker-registry``) on a free port on 127.0.0.1;
2. pushes four tiny single-architecture images (as a per-architecture build would) to
   ``demo/compose-updater:{amd64,arm32v6,arm32v7,arm64v8}``;
3. runs ``pushmanifest from-spec examples/multi-arch-manifest.yaml`` against it;
4. reads the list back and prints it;
5. runs ``examples/library_push.py`` against it (the same from Python), then stops the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from support.images import read_manifest, seed_image  # noqa: E402
from support.registry import start_open_registry  # noqa: E402

IMAGES = [
    ("amd64", "amd64", ""),
    ("arm32v6", "arm", "v6"),
    ("arm32v7", "arm", "v7"),
    ("arm64v8", "arm64", "v8"),
]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pushmanifest-quickstart-") as tmp:
        registry = start_open_registry(tmp)
        try:
            print(f"registry: {registry.url} (docker-registry, storage in {tmp})")
            for tag, arch, variant in IMAGES:
                image = seed_image(
                    registry, "demo/compose-updater", tag, architecture=arch, variant=variant
                )
                print(f"pushed {registry.host}/demo/compose-updater:{tag}  {image.digest}")

            spec = REPO_ROOT / "examples" / "multi-arch-manifest.yaml"
            command = [sys.executable, "-m", "pushmanifest", "from-spec", str(spec)]
            print(
                f"\n$ REGISTRY={registry.host} pushmanifest from-spec {spec.relative_to(REPO_ROOT)}"
            )
            sys.stdout.flush()
            result = subprocess.run(command, env={**os.environ, "REGISTRY": registry.host})
            if result.returncode != 0:
                return result.returncode

            body, media_type, digest = read_manifest(registry, "demo/compose-updater", "latest")
            print(f"\nthe registry now serves {registry.host}/demo/compose-updater:latest")
            print(f"  {media_type}\n  {digest}, {len(body)} bytes")
            for entry in json.loads(body)["manifests"]:
                platform = entry["platform"]
                name = "/".join(
                    p
                    for p in (platform["os"], platform["architecture"], platform.get("variant"))
                    if p
                )
                print(f"  {name:<16} {entry['digest']}")

            library = REPO_ROOT / "examples" / "library_push.py"
            print(f"\n$ python3 {library.relative_to(REPO_ROOT)} {registry.host}")
            sys.stdout.flush()
            return subprocess.run([sys.executable, str(library), registry.host]).returncode
        finally:
            registry.stop()


if __name__ == "__main__":
    raise SystemExit(main())
