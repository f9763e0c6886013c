#!/usr/bin/env python3
"""The floor of ``pushmanifest from-spec --plain-http SPEC``: the same job with only its three
dependencies, written as plainly as they allow, for the start-up comparison of
``benchmarks/run.py`` (issue 12: time to first request within 1.15x of this).

    python3 benchmarks/floor.py SPEC [--docker-cfg DIR]

The job, with the requests pushmanifest makes: the interpreter; ``yaml``, ``pydantic`` and
``httpx`` imported; the YAML parsed (libyaml's C loader where it is there) and validated by a
pydantic model (the image, its tags, its sources and their platforms); one ``httpx.AsyncClient``;
with token auth the ping (``GET /v2/``) and one token for the run (Basic auth from the docker
config's ``auths``); a HEAD per source and one of the tag, all at once; the list (Docker
manifest list v2) built from the HEADs and PUT to the tag. It prints the list's digest.

What it leaves out is what the job does not need on a machine that has only the three
dependencies: it blocks the optional packages httpx would pick up where they are installed (trio,
h2, httpx's own CLI), sets ``PYDANTIC_DISABLE_PLUGINS`` (documented), and loads no CA store
(plain HTTP, ``verify=False``). No error handling beyond a non-zero exit: a floor, not a tool.
"""

from __future__ import annotations

import os
import sys

# Not among the three dependencies: absent on a machine that has only them.
for _name in ("trio", "h2", "httpx._main"):
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
from typing import Optional  # noqa: E402

import httpx  # noqa: E402
import pydantic  # noqa: E402
import yaml  # noqa: E402

LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        LIST_TYPE,
        "application/vnd.oci.image.index.v1+json",
    ]
)


class Platform(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(coerce_numbers_to_str=True)  # architecture: 386

    os: str
    architecture: str
    variant: Optional[str] = None


class Entry(pydantic.BaseModel):
    image: str
    platform: Platform


class Spec(pydantic.BaseModel):
    image: str
    tags: list[str] = []
    manifests: list[Entry]


def split(image: str) -> tuple[str, str, str]:
    """host, repository, tag of ``host/repo:tag``."""
    host, _, rest = image.partition("/")
    repo, _, tag = rest.rpartition(":")
    return host, repo, tag


def basic_auth(host: str, config_dir: Optional[str]) -> Optional[str]:
    if not config_dir:
        return None
    try:
        with open(os.path.join(config_dir, "config.json")) as handle:
            auths = json.load(handle).get("auths", {})
    except OSError:
        return None
    entry = auths.get(host)
    return entry.get("auth") if entry else None


async def token(client: httpx.AsyncClient, host: str, repo: str, auth: Optional[str]) -> str:
    """The ping; where it asks for a Bearer token, one token for the run (pull and push)."""
    ping = await client.get(f"http://{host}/v2/")
    challenge = ping.headers.get("www-authenticate", "")
    if ping.status_code != 401 or not challenge.lower().startswith("bearer "):
        return ""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    query = {"service": params.get("service", ""), "scope": f"repository:{repo}:pull,push"}
    headers = {"Authorization": f"Basic {auth}"} if auth else {}
    answer = await client.get(params["realm"], params=query, headers=headers)
    answer.raise_for_status()
    body = answer.json()
    return f"Bearer {body.get('token') or body['access_token']}"


async def push(spec: Spec, config_dir: Optional[str]) -> str:
    host, repo, tag = split(spec.image)
    async with httpx.AsyncClient(verify=False) as client:
        bearer = await token(client, host, repo, basic_auth(host, config_dir))
        headers = {"Accept": ACCEPT, **({"Authorization": bearer} if bearer else {})}

        async def head(image: str) -> httpx.Response:
            h, r, t = split(image)
            answer = await client.head(f"http://{h}/v2/{r}/manifests/{t}", headers=headers)
            answer.raise_for_status()
            return answer

        *sources, _ = await asyncio.gather(
            *(head(entry.image) for entry in spec.manifests),
            client.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers=headers),
        )
        manifests = []
        for entry, answer in zip(spec.manifests, sources):
            platform = entry.platform.model_dump(exclude_none=True)
            manifests.append(
                {
                    "mediaType": answer.headers["content-type"],
                    "size": int(answer.headers["content-length"]),
                    "digest": answer.headers["docker-content-digest"],
                    "platform": platform,
                }
            )
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": LIST_TYPE, "manifests": manifests}, indent=3
        ).encode()
        put = await client.put(
            f"http://{host}/v2/{repo}/manifests/{tag}",
            content=body,
            headers={**headers, "Content-Type": LIST_TYPE},
        )
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(body).hexdigest()


def main(argv: list[str]) -> int:
    path = argv[0]
    config_dir = argv[argv.index("--docker-cfg") + 1] if "--docker-cfg" in argv else None
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = Spec.model_validate(data)
    print(asyncio.run(push(spec, config_dir or os.environ.get("DOCKER_CONFIG"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
