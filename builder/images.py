"""The image lock (image/images.lock.json): every container image the stacks run, by tag and digest.

The stacks never name an image: they read `${VARIABLE}` from images.env, which is rendered from
this file. A digest that could not be verified from a public source stays null until `builder
images lock` asks a registry (Registry HTTP API v2, anonymous bearer tokens as Docker Hub and
GHCR hand out); the bake refuses an unresolved pin unless told otherwise.

A digest `builder images lock` wrote carries its record, `resolved`: the manifest URL it asked
(the registry, or the mirror that stood in for it), when (UTC), and the media type the registry
said the digest is of (an index for a multi-platform tag). A digest without that record was
pinned by hand from a public source, which `source` names.

Its `models` section records each baked Ollama model as the Ollama registry served it when `builder
images lock` asked: the manifest's digest and the bytes of its config and layers, which is what the
disk check counts (builder/capacity.py). A lock without that section is read as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError
from builder.source_tree import ROOT

REPO_ROOT = ROOT
LOCK_PATH = REPO_ROOT / "image" / "images.lock.json"
LOCK_VERSION = 1
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*_IMAGE")
_REPOSITORY = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Where a repository's registry answers the API (Docker Hub's API host is not its name).
REGISTRY_API = {"docker.io": "https://registry-1.docker.io"}


class LockError(BuilderError):
    pass


def lock_command() -> str:
    """How to run `builder images lock` from this builder: an installed one needs a copy of its lock."""
    from builder.source_tree import installed

    if installed():
        return "`builder images lock --lock FILE` (FILE: a copy of the lock builder carries; then `bake --lock FILE`)"
    return "`builder images lock`"


@dataclass(frozen=True)
class Resolution:
    """Where and when `builder images lock` read a digest: the manifest URL, the UTC time, and the
    media type the registry answered with (an OCI index or a Docker manifest list for a
    multi-platform tag)."""

    url: str
    at: str
    media_type: str

    def to_json(self) -> dict:
        return {"from": self.url, "at": self.at, "media_type": self.media_type}


@dataclass(frozen=True)
class Pin:
    variable: str
    repository: str
    tag: str
    digest: str | None
    source: str
    resolved: Resolution | None = None

    @property
    def registry(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.repository.split("/", 1)[1]

    def reference(self, with_digest: bool = True) -> str:
        base = f"{self.repository}:{self.tag}"
        return f"{base}@{self.digest}" if with_digest and self.digest else base


def load_lock(path: Path = LOCK_PATH) -> list[Pin]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LockError(f"{path}: cannot be read as JSON ({exc})") from None
    return pins_of(document, path)


def pins_of(document, path: Path) -> list[Pin]:
    """The pins of a lock document, checked; errors name `path` and the entry."""
    if not isinstance(document, dict) or document.get("version") != LOCK_VERSION:
        raise LockError(f"{path}: version must be {LOCK_VERSION}")
    pins, seen_variables, seen_references = [], set(), set()
    for index, entry in enumerate(document.get("images") or []):
        where = f"{path}: images[{index}]"
        if not isinstance(entry, dict):
            raise LockError(f"{where}: must be an object")
        unknown = set(entry) - {"variable", "repository", "tag", "digest", "source", "resolved"}
        if unknown:
            raise LockError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        checks = [
            ("variable", _VARIABLE, "an UPPER_SNAKE_CASE name ending in _IMAGE"),
            ("repository", _REPOSITORY, "REGISTRY/PATH, e.g. docker.io/library/postgres"),
            ("tag", _TAG, "a tag"),
        ]
        for key, pattern, what in checks:
            if not isinstance(entry.get(key), str) or not pattern.fullmatch(entry[key]):
                raise LockError(f"{where}: {key}: must be {what}")
        if entry["tag"] == "latest":
            raise LockError(f"{where}: tag: 'latest' is not a pin; name a version")
        digest = entry.get("digest")
        if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
            raise LockError(f"{where}: digest: must be sha256:<64 hex digits> or null (unresolved)")
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise LockError(f"{where}: source: say where the tag (and digest) was verified")
        resolved = _resolution_of(entry.get("resolved"), digest, where)
        pin = Pin(entry["variable"], entry["repository"], entry["tag"], digest, entry["source"], resolved)
        if pin.variable in seen_variables:
            raise LockError(f"{where}: {pin.variable} is listed twice")
        if pin.reference(False) in seen_references:
            raise LockError(f"{where}: {pin.reference(False)} is listed twice")
        seen_variables.add(pin.variable)
        seen_references.add(pin.reference(False))
        pins.append(pin)
    if not pins:
        raise LockError(f"{path}: lists no images")
    return pins


_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _resolution_of(record, digest: str | None, where: str) -> Resolution | None:
    """An entry's `resolved` record, checked (absent: a digest pinned by hand, or none yet)."""
    if record is None:
        return None
    if digest is None:
        raise LockError(f"{where}: resolved: a record of where the digest came from, but digest is null")
    if not isinstance(record, dict) or set(record) != {"from", "at", "media_type"}:
        raise LockError(f"{where}: resolved: must be an object with from, at and media_type")
    if not isinstance(record["from"], str) or not re.fullmatch(r"https?://\S+/manifests/\S+", record["from"]):
        raise LockError(f"{where}: resolved.from: must be the manifest URL the digest was read from")
    if not isinstance(record["at"], str) or not _UTC_TIME.fullmatch(record["at"]):
        raise LockError(f"{where}: resolved.at: must be a UTC time, YYYY-MM-DDTHH:MM:SSZ")
    if record["media_type"] not in MANIFEST_TYPES.split(", "):
        raise LockError(f"{where}: resolved.media_type: must be one of {MANIFEST_TYPES}")
    return Resolution(record["from"], record["at"], record["media_type"])


def unresolved(pins: list[Pin]) -> list[Pin]:
    return [pin for pin in pins if pin.digest is None]


def render_images_env(pins: list[Pin], *, allow_unresolved: bool = False, with_digests: bool = True) -> str:
    """images.env for the stacks: VARIABLE=repository:tag@digest, one line per pin.

    An unresolved pin is refused unless `allow_unresolved` (it is then named by tag alone).
    `with_digests=False` names every image by tag: only for locally built stand-ins, which cannot
    carry the real images' digests.
    """
    missing = unresolved(pins)
    if missing and with_digests and not allow_unresolved:
        names = ", ".join(pin.reference(False) for pin in missing)
        raise LockError(
            f"{len(missing)} image(s) have no digest in the lock: {names}. "
            f"Run {lock_command()} where their registries are reachable, or pass --allow-unresolved."
        )
    lines = ["# Rendered from image/images.lock.json by builder: the images the stacks run."]
    lines += [f"{pin.variable}={pin.reference(with_digests)}" for pin in pins]
    return "\n".join(lines) + "\n"


def resolve_digest(pin: Pin, registries: dict[str, str], session=None, timeout: float = 30) -> tuple[str, Resolution]:
    """The digest the registry serves for pin's tag, and where and when it was read.

    The Accept header names the index types first, so a multi-platform tag answers with its index's
    digest (what `docker pull` resolves, whatever the platform), not one platform's manifest.
    """
    import datetime as dt

    import requests

    session = session or requests.Session()
    base = registries.get(pin.registry) or REGISTRY_API.get(pin.registry) or f"https://{pin.registry}"
    url = f"{base.rstrip('/')}/v2/{pin.path}/manifests/{pin.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    try:
        response = session.head(url, headers=headers, timeout=timeout)
        if response.status_code == 401:
            headers["Authorization"] = f"Bearer {_anonymous_token(session, response, timeout)}"
            response = session.head(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise LockError(
            f"{pin.reference(False)}: registry {base} cannot be reached ({exc.__class__.__name__}); "
            f"point --registry {pin.registry}=URL at a mirror that can"
        ) from None
    if response.status_code == 404:
        raise LockError(f"{pin.reference(False)}: the registry at {base} has no such tag")
    if response.status_code != 200:
        raise LockError(f"{pin.reference(False)}: {base} answered HTTP {response.status_code}")
    digest = response.headers.get("Docker-Content-Digest", "")
    if not DIGEST.fullmatch(digest):
        raise LockError(f"{pin.reference(False)}: {base} sent no sha256 Docker-Content-Digest header")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type not in MANIFEST_TYPES.split(", "):
        raise LockError(f"{pin.reference(False)}: {base} answered with {media_type or 'no'} media type, not a manifest")
    at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return digest, Resolution(url, at, media_type)


def _anonymous_token(session, challenge, timeout: float) -> str:
    header = challenge.headers.get("WWW-Authenticate", "")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
    if not header.lower().startswith("bearer") or "realm" not in fields:
        raise LockError(f"registry asked for credentials this command does not have ({header or 'no challenge'})")
    params = {key: value for key, value in fields.items() if key in ("service", "scope")}
    response = session.get(fields["realm"], params=params, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    return body.get("token") or body["access_token"]


CUSTOM_PREFIX = "CUSTOM_"  # the variables of the owner's own services (builder/custom_services.py)


def with_custom_pins(document: dict, custom: list[Pin]) -> dict:
    """The lock document with the owner's services' pins as given: each replaces the entry of its
    variable (kept as it is when the reference is unchanged, digest and all), and the entries of
    services no longer in the config go."""
    wanted = {pin.variable: pin for pin in custom}
    entries = []
    for entry in document.get("images") or []:
        variable = entry.get("variable", "")
        if not variable.startswith(CUSTOM_PREFIX):
            entries.append(entry)
        elif variable in wanted:
            pin = wanted.pop(variable)
            same = (entry.get("repository"), entry.get("tag")) == (pin.repository, pin.tag)
            entries.append(entry if same and not pin.digest else _entry(pin))
    entries += [_entry(pin) for pin in wanted.values()]
    return {**document, "images": entries}


def _entry(pin: Pin) -> dict:
    entry = {
        "variable": pin.variable,
        "repository": pin.repository,
        "tag": pin.tag,
        "digest": pin.digest,
        "source": pin.source,
    }
    return {**entry, "resolved": pin.resolved.to_json()} if pin.resolved else entry


def write_lock_document(path: Path, document: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


@dataclass
class Locked:
    images: list[tuple[Pin, str]]
    models: list[ModelPin]


def lock_digests(
    path: Path,
    registries: dict[str, str],
    *,
    refresh: bool = False,
    session=None,
    custom: list[Pin] | None = None,
    models: list[str] | None = None,
    models_mirror: str | None = None,
    write: bool = True,
) -> Locked:
    """Resolve every unresolved digest (every digest with `refresh`) and rewrite the lock file.

    `custom` are the pins of the owner's own services (services.custom): they join the lock first.
    `models` (the config's baked models) are recorded from the Ollama registry (`models_mirror`, or
    --registry registry.ollama.ai=URL) where the lock has no record of them yet (every one with
    `refresh`). Everything is resolved before the file is written: a failure changes nothing.
    `write=False` (a dry run) resolves and returns the same, and leaves the file as it is.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    original = json.dumps(document)
    if custom is not None:
        document = with_custom_pins(document, custom)
    pins = pins_of(document, path)
    recorded = models_of(document, path)
    resolved = []
    for entry, pin in zip(document["images"], pins, strict=False):
        if pin.digest and not refresh:
            continue
        digest, resolution = resolve_digest(pin, registries, session=session)
        if pin.digest and pin.digest != digest:
            raise LockError(
                f"{pin.reference(False)}: the registry serves {digest}, the lock says {pin.digest}; "
                "the tag was moved or the registry is not the one the lock was made from"
            )
        entry["digest"] = digest
        # A refresh that confirms a recorded digest keeps its record (the lock, an input of the
        # bake, changes only when what it pins does).
        if not pin.resolved:
            entry["resolved"] = resolution.to_json()
        resolved.append((pin, digest))
    models_resolved = []
    base = registries.get(MODELS_REGISTRY) or models_mirror or MODELS_REGISTRY_URL
    for model in models or []:
        if model in recorded and not refresh:
            continue
        found = resolve_model(model, base, session=session)
        known = recorded.get(model)
        if known and known.digest != found.digest:
            raise LockError(
                f"model {model}: the registry at {base} serves manifest {found.digest}, the lock says "
                f"{known.digest}; the tag was moved or the registry is not the one the lock was made from"
            )
        recorded[model] = found
        models_resolved.append(found)
    if models_resolved:
        document["models"] = [_model_entry(pin) for _, pin in sorted(recorded.items())]
    if write and (resolved or models_resolved or json.dumps(document) != original):
        write_lock_document(path, document)
    return Locked(resolved, models_resolved)


# The Ollama registry (image/provision/fetch-models.py fetches from it, or from image.mirrors.models).
MODELS_REGISTRY = "registry.ollama.ai"
MODELS_REGISTRY_URL = f"https://{MODELS_REGISTRY}"
MODEL_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_MODEL = re.compile(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ModelPin:
    """An Ollama model as its registry served it: the manifest's sha256 and its blobs' total bytes."""

    model: str
    digest: str
    bytes: int
    source: str


def models_of(document, path: Path) -> dict[str, ModelPin]:
    """The lock's recorded models by NAME:TAG ({} for a lock without a `models` section)."""
    entries = document.get("models") if isinstance(document, dict) else None
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise LockError(f"{path}: models: must be a list of recorded models")
    found = {}
    for index, entry in enumerate(entries):
        where = f"{path}: models[{index}]"
        if not isinstance(entry, dict):
            raise LockError(f"{where}: must be an object")
        unknown = set(entry) - {"model", "digest", "bytes", "source"}
        if unknown:
            raise LockError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        model = entry.get("model")
        if not isinstance(model, str) or not _MODEL.fullmatch(model) or model.endswith(":latest"):
            raise LockError(f"{where}: model: must be NAME:TAG as in ollama.models (never :latest)")
        if not isinstance(entry.get("digest"), str) or not DIGEST.fullmatch(entry["digest"]):
            raise LockError(f"{where}: digest: must be sha256:<64 hex digits>, the manifest's")
        size = entry.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise LockError(f"{where}: bytes: must be a positive integer (config and layers, as served)")
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise LockError(f"{where}: source: say where the manifest was read")
        if model in found:
            raise LockError(f"{where}: {model} is listed twice")
        found[model] = ModelPin(model, entry["digest"], size, entry["source"])
    return found


def load_models(path: Path = LOCK_PATH) -> dict[str, ModelPin]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LockError(f"{path}: cannot be read as JSON ({exc})") from None
    return models_of(document, path)


def _model_entry(pin: ModelPin) -> dict:
    return {"model": pin.model, "digest": pin.digest, "bytes": pin.bytes, "source": pin.source}


def resolve_model(model: str, base: str, session=None, timeout: float = 30) -> ModelPin:
    """The model's manifest from an Ollama registry (its paths as fetch-models.py reads them): the
    manifest's sha256 and the sum of its config's and layers' sizes."""
    import hashlib

    import requests

    session = session or requests.Session()
    name, tag = model.rsplit(":", 1)
    name = name if "/" in name else f"library/{name}"
    url = f"{base.rstrip('/')}/v2/{name}/manifests/{tag}"
    try:
        response = session.get(url, headers={"Accept": MODEL_MANIFEST_TYPE}, timeout=timeout)
    except requests.RequestException as exc:
        raise LockError(
            f"model {model}: the Ollama registry {base} cannot be reached ({exc.__class__.__name__}); set "
            f"image.mirrors.models, or point --registry {MODELS_REGISTRY}=URL at a mirror that can"
        ) from None
    if response.status_code == 404:
        raise LockError(f"model {model}: the registry at {base} has no such model or tag")
    if response.status_code != 200:
        raise LockError(f"model {model}: {base} answered HTTP {response.status_code}")
    try:
        manifest = response.json()
        blobs = [manifest["config"], *manifest["layers"]]
        sizes = [blob["size"] for blob in blobs]
    except (ValueError, KeyError, TypeError):
        raise LockError(f"model {model}: {url} is not an image manifest with a config and layers") from None
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in sizes):
        raise LockError(f"model {model}: {url} gives a size that is not a byte count")
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    return ModelPin(model, digest, sum(sizes), f"{url} (config and {len(blobs) - 1} layer(s), as served)")


def parse_registry_overrides(values: tuple[str, ...], allow_insecure_http: bool = False) -> dict[str, str]:
    """--registry REGISTRY=URL, each; a plain http:// URL only when allowed (whoever is on the path
    could answer with any digest, and the lock would record it)."""
    overrides = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not re.fullmatch(r"https?://\S+", url):
            raise BuilderError(f"--registry {value!r}: must be REGISTRY=URL, e.g. docker.io=https://mirror.internal")
        if url.startswith("http://") and not allow_insecure_http:
            raise BuilderError(
                f"--registry {value!r}: plain http: use https://, or pass --allow-insecure-http (or set "
                "image.mirrors.allow_insecure_http: true) to take its digests unauthenticated. Nothing was done."
            )
        overrides[name] = url
    return overrides
