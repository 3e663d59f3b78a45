#!/usr/bin/env python3
"""Pin every base image by digest, and the RDS CA bundle by its sha256, in deploy/pins.env.

The Dockerfiles and docker-compose.yml name their base images by exact tag (here no registry
can be reached, so no digest could be checked); a tag can be moved to other content, a digest
cannot. Where a registry and the internet are reachable, this script:

- reads each image variable and its tag: ``ARG PYTHON_IMAGE=python:3.11-slim-bookworm`` in the
  Dockerfiles, ``image: ${POSTGRES_IMAGE:-postgres:15.8-bookworm}`` in docker-compose.yml;
- asks the image's registry for the tag's manifest (the multi-platform index where there is
  one) and pins the sha256 of the bytes it received, after checking that they are what the
  registry says they are (its Docker-Content-Digest header): ``name:tag@sha256:...``;
- downloads the RDS CA bundle (the Dockerfiles' ``RDS_CA_BUNDLE``), checks that it is a PEM
  bundle of certificates that load, and pins its sha256 (``RDS_CA_BUNDLE_SHA256``).

Only what was resolved and checked is written; whatever could not be is named and left out
(the builds then use its tag; a pin an earlier run checked for the same tag is kept), and the
exit status is 1. Nothing is written from a guess, and nothing at all when nothing resolved.

The builds honour the pins: the Dockerfiles take ``--build-arg``s (``--build-args`` prints
them), docker-compose.yml interpolates the same variables (``docker compose --env-file
deploy/pins.env --env-file .env up``), each with the exact tag as its default.

    python3 scripts/pin_images.py                 # resolve, check, write deploy/pins.env
    python3 scripts/pin_images.py --build-args    # the pins as docker build arguments

Standard library only: it runs without the project's virtualenv.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "deploy" / "pins.env"
DOCKERFILES = ("services/catalog/Dockerfile", "services/orders/Dockerfile",
               "services/order-worker/Dockerfile", "deploy/compose/moto/Dockerfile")
COMPOSE = "docker-compose.yml"
CA_VARIABLE = "RDS_CA_BUNDLE"
DOCKER_HUB = "registry-1.docker.io"
# What a tag may point at: a multi-platform index (pinned as such: every platform keeps
# working) or a single manifest.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
TIMEOUT = 30
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# ARG NAME_IMAGE=tag (Dockerfiles), ${NAME_IMAGE:-tag} (docker-compose.yml)
ARG_IMAGE = re.compile(r"^ARG (?P<var>[A-Z0-9_]+_IMAGE)=(?P<tag>\S+)$", re.M)
COMPOSE_IMAGE = re.compile(r"\$\{(?P<var>[A-Z0-9_]+_IMAGE):-(?P<tag>[^}]+)\}")
ARG_CA = re.compile(rf"^ARG {CA_VARIABLE}=(?P<url>https://\S+)$", re.M)


class PinError(Exception):
    """Something could not be resolved or checked: no pin for it."""


@dataclass(frozen=True)
class Reference:
    """``[registry/]repository:tag`` as docker reads it."""

    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> Reference:
        if "@" in text:
            raise PinError(f"{text}: already pinned by digest")
        name, _, tag = text.rpartition(":")
        if not name or "/" in tag:
            raise PinError(f"{text}: no tag")
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
            if "/" not in repository:
                repository = f"library/{repository}"
        return cls(registry, repository, tag)


def base_images(root: Path = ROOT) -> dict[str, str]:
    """Each image variable and its tag, from the Dockerfiles and docker-compose.yml; one
    variable, one tag everywhere."""
    found: dict[str, set[str]] = {}
    sources = [(root / path, ARG_IMAGE) for path in DOCKERFILES] + [
        (root / COMPOSE, COMPOSE_IMAGE)]
    for path, pattern in sources:
        for match in pattern.finditer(path.read_text()):
            found.setdefault(match["var"], set()).add(match["tag"])
    conflicts = {var: sorted(tags) for var, tags in found.items() if len(tags) > 1}
    if conflicts:
        raise PinError(f"one variable, several tags: {conflicts}")
    return {var: tags.pop() for var, tags in sorted(found.items())}


def ca_bundle_url(root: Path = ROOT) -> str:
    urls = {match["url"] for path in DOCKERFILES[:3]
            for match in ARG_CA.finditer((root / path).read_text())}
    if len(urls) != 1:
        raise PinError(f"the Dockerfiles name {len(urls)} different {CA_VARIABLE} URLs")
    return urls.pop()


def _get(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.read(), {k.lower(): v for k, v in response.headers.items()}


def _bearer_token(challenge: str, repository: str) -> str:
    """An anonymous pull token from the realm a registry's 401 names."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer ") or "realm" not in fields:
        raise PinError(f"unsupported authentication challenge: {challenge!r}")
    query = {"service": fields.get("service", ""),
             "scope": fields.get("scope", f"repository:{repository}:pull")}
    body, _ = _get(f"{fields['realm']}?{urllib.parse.urlencode(query)}", {})
    data = json.loads(body)
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str):
        raise PinError("the registry's token service gave no token")
    return token


def manifest_digest(reference: Reference, registry_url: str | None = None) -> str:
    """The sha256 of the manifest the tag points at, checked against what the registry says."""
    base = registry_url or f"https://{reference.registry}"
    url = f"{base}/v2/{reference.repository}/manifests/{reference.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    try:
        try:
            body, answer = _get(url, headers)
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
            token = _bearer_token(exc.headers.get("WWW-Authenticate", ""),
                                  reference.repository)
            body, answer = _get(url, {**headers, "Authorization": f"Bearer {token}"})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PinError(f"{reference.registry}: {exc}") from exc
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    said = answer.get("docker-content-digest")
    if said and said != digest:
        raise PinError(f"the registry says {said}, the manifest it sent hashes to {digest}")
    try:
        media = json.loads(body).get("mediaType", answer.get("content-type", ""))
    except ValueError as exc:
        raise PinError("the registry's answer is not a manifest") from exc
    if "manifest" not in media and "index" not in media:
        raise PinError(f"the registry's answer is a {media!r}, not a manifest")
    return digest


def ca_bundle_sha256(url: str) -> str:
    """The bundle's sha256, once it is known to be a PEM bundle of certificates that load."""
    try:
        body, _ = _get(url, {})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PinError(f"{url}: {exc}") from exc
    text = body.decode("ascii", errors="replace")
    count = text.count("-----BEGIN CERTIFICATE-----")
    if count == 0:
        raise PinError(f"{url}: no PEM certificate in what was downloaded")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise PinError(f"{url}: the certificates do not load: {exc}") from exc
    if len(context.get_ca_certs()) != count:
        raise PinError(f"{url}: {count} certificates, of which "
                       f"{len(context.get_ca_certs())} load")
    return hashlib.sha256(body).hexdigest()


def resolve(registry_url: str | None = None, ca_url: str | None = None,
            root: Path = ROOT) -> tuple[dict[str, str], dict[str, str]]:
    """(pins, failures): each variable's verified pin, or why there is none."""
    pins: dict[str, str] = {}
    failures: dict[str, str] = {}
    for variable, tag in base_images(root).items():
        try:
            pins[variable] = f"{tag}@{manifest_digest(Reference.parse(tag), registry_url)}"
        except PinError as exc:
            failures[variable] = f"{tag}: {exc}"
    try:
        pins[f"{CA_VARIABLE}_SHA256"] = ca_bundle_sha256(ca_url or ca_bundle_url(root))
    except PinError as exc:
        failures[f"{CA_VARIABLE}_SHA256"] = str(exc)
    return pins, failures


def render(pins: dict[str, str], failures: dict[str, str]) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        "# Base images by digest and the RDS CA bundle by sha256, each resolved and checked by",
        f"# scripts/pin_images.py on {today}; never edited by hand. What is not here (could not",
        "# be resolved) is built from the exact tag the Dockerfiles and docker-compose.yml name.",
        "#   docker compose --env-file deploy/pins.env --env-file .env up -d --build",
        "#   docker build $(python3 scripts/pin_images.py --build-args) \\",
        "#       -f services/orders/Dockerfile .",
    ]
    lines += [f"# not resolved on {today}: {variable}: {why}"
              for variable, why in sorted(failures.items())]
    lines += [f"{variable}={value}" for variable, value in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def read_pins(path: Path = PINS) -> dict[str, str]:
    """The pins file's variables (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            variable, _, value = line.partition("=")
            pins[variable.strip()] = value.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=PINS)
    parser.add_argument("--build-args", action="store_true",
                        help="print the pins file's pins as docker build arguments, and stop")
    parser.add_argument("--registry", help="ask this registry URL for every image (a mirror)")
    parser.add_argument("--ca-bundle-url", help="download the CA bundle from here instead")
    args = parser.parse_args(argv)
    if args.build_args:
        image_args = {"PYTHON_IMAGE", f"{CA_VARIABLE}_SHA256"}  # what the Dockerfiles take
        print(" ".join(f"--build-arg {k}={v}" for k, v in read_pins(args.output).items()
                       if k in image_args))
        return 0
    pins, failures = resolve(args.registry, args.ca_bundle_url)
    if not pins:
        for variable, why in sorted(failures.items()):
            print(f"NOT pinned: {variable}: {why}", file=sys.stderr)
        print(f"nothing could be resolved and checked: {args.output} left as it was",
              file=sys.stderr)
        return 1
    # A pin of an earlier run stays for what could not be resolved now, while the tag it was
    # resolved from is still the one named: it was checked then.
    tags = {**base_images(), f"{CA_VARIABLE}_SHA256": ""}
    for variable, value in read_pins(args.output).items():
        if variable in failures and variable in tags and (
                not tags[variable] or value.startswith(f"{tags[variable]}@")):
            pins[variable] = value
            failures[variable] += " (the previous run's pin kept)"
    for variable, value in sorted(pins.items()):
        print(f"pinned: {variable}={value}")
    for variable, why in sorted(failures.items()):
        print(f"NOT pinned now (could not be resolved and checked): {variable}: {why}",
              file=sys.stderr)
    args.output.write_text(render(pins, failures))
    print(f"wrote {args.output}: {len(pins)} pins")
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
