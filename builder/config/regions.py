"""Known AWS regions, read from botocore's own endpoint data (no API call, no guessing)."""

from __future__ import annotations

import difflib
import re
from functools import lru_cache


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Every region botocore knows for EC2, in every partition (aws, aws-cn, aws-us-gov, the ISO ones...)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    )


@lru_cache(maxsize=1)
def _region_shapes() -> tuple[re.Pattern[str], ...]:
    """Each partition's pattern of region names (botocore's partitions.json): what a new region looks like."""
    import botocore.loaders

    document = botocore.loaders.Loader().load_data("partitions")
    return tuple(re.compile(partition["regionRegex"]) for partition in document["partitions"])


def region_problem(region: str) -> str | None:
    """None when botocore knows the region; otherwise an error message with the closest known ones.

    A region newer than the installed botocore is refused too (as an unknown instance type is): the
    message says so when the name has the shape of a partition's regions, and the fix is an upgrade.
    """
    known = known_regions()
    if region in known:
        return None
    import botocore

    close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {_either(close)}?" if close else "for example eu-west-1 or us-east-1"
    if any(shape.fullmatch(region) for shape in _region_shapes()):
        return (
            f"{region!r} is not a region botocore {botocore.__version__} knows ({hint}); "
            "if it is a new region, upgrade boto3 (pip install -U boto3)"
        )
    return f"must be an AWS region; {region!r} is not one ({hint})"


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
