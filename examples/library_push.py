"""Use pushmanifest as a library: build a spec in code, push it, read the result.

    python3 examples/library_push.py

Starts its own local registry (as the quickstart does), pushes two tiny images, then:
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pushmanifest
from pushmanifest import ManifestListSpec
from support.images import seed_image
from support.registry import start_open_registry


def release(registry: str) -> None:
    spec = ManifestListSpec(
        image=f"{registry}/team/app:1.4",
        tags=["1", "latest"],
        manifests=[
            {
                "image": f"{registry}/team/app:1.4-amd64",
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "image": f"{registry}/team/app:1.4-arm64",
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
        ],
    )
    # Dry run first: resolves every source, writes nothing.
    [planned] = pushmanifest.push(spec, dry_run=True)
    print(f"would push {planned.digest} ({planned.size} bytes, {planned.media_type})")

    try:
        [result] = pushmanifest.push(spec)
    except pushmanifest.PushManifestError as exc:  # InputError (bad input) or RegistryError
        raise SystemExit(f"push failed: {exc}") from None
    print(f"pushed {result.digest} to tags {', '.join(result.tags)}")
    for entry in result.entries:
        print(f"  {entry.platform}  {entry.image.familiar()}  {entry.descriptor.digest}")

    # The same from async code; an unchanged list writes nothing the second time.
    [again] = asyncio.run(pushmanifest.push_async(spec))
    print(f"async rerun: same digest {again.digest == result.digest}, tags written {again.written}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, start_open_registry(tmp) as registry:
        seed_image(registry, "team/app", "1.4-amd64", architecture="amd64")
        seed_image(registry, "team/app", "1.4-arm64", architecture="arm64", variant="v8")
        release(registry.host)


if __name__ == "__main__":
    main()
