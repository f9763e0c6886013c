"""Use pushmanifest as a library: build a spec in code, dry-run it, push it, read the result.

    python3 examples/library_push.py REGISTRY

REGISTRY (``host:port``) must hold the images the quickstart pushes,
``demo/compose-updater:amd64`` and ``:arm64v8``; ``examples/quickstart.sh`` runs this file
against its own registry as its last step. Nothing here but pushmanifest itself.
"""

from __future__ import annotations

import asyncio
import sys

import pushmanifest
from pushmanifest import ManifestListSpec


def release(registry: str) -> int:
    spec = ManifestListSpec(
        image=f"{registry}/demo/app:1.4",
        tags=["1", "latest"],
        manifests=[
            {
                "image": f"{registry}/demo/compose-updater:amd64",
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "image": f"{registry}/demo/compose-updater:arm64v8",
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
        ],
    )
    try:
        # Dry run first: resolves every source, writes nothing.
        [planned] = pushmanifest.push(spec, dry_run=True)
        print(f"would push {planned.digest} ({planned.size} bytes, {planned.media_type})")

        [result] = pushmanifest.push(spec)
    except pushmanifest.PushManifestError as exc:  # InputError (bad input) or RegistryError
        print(f"push failed: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"pushed {result.digest} to tags {', '.join(result.tags)}")
    for entry in result.entries:
        print(f"  {entry.platform}  {entry.image.familiar()}  {entry.descriptor.digest}")

    # The same from async code; an unchanged list writes nothing the second time.
    [again] = asyncio.run(pushmanifest.push_async(spec))
    print(f"async rerun: same digest {again.digest == result.digest}, tags written {again.written}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(
            f"usage: {sys.argv[0]} REGISTRY (host:port holding the quickstart's images)"
        )
    raise SystemExit(release(sys.argv[1]))
