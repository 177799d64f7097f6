"""Known EC2 instance types, read from botocore's EC2 service model (no API call, no guessing)."""

from __future__ import annotations

import difflib
from functools import lru_cache


@lru_cache(maxsize=1)
def known_instance_types() -> frozenset[str]:
    # botocore ships the EC2 API model; its InstanceType enum is AWS's own list. Loading it takes
    # about 0.3 s, so it happens only when a config is validated, never for `--help`.
    import botocore.loaders

    model = botocore.loaders.Loader().load_service_model("ec2", "service-2")
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def suggest_instance_types(instance_type: str) -> str | None:
    """None when the type is known; otherwise the tail of an error message with close matches."""
    known = known_instance_types()
    if instance_type in known:
        return None
    close = difflib.get_close_matches(instance_type, sorted(known), n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(close) + "?"
    return "; use an EC2 type such as m6i.2xlarge or g5.xlarge"
