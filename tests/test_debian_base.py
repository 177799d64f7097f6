"""The local target's Debian base image: cached by what shapes it. (The VM test builds it for real.)"""

from __future__ import annotations

from builder.local import debian_base


def test_a_cached_image_is_returned_without_building(tmp_path):
    target = tmp_path / f"debian-12-{debian_base.cache_key()}"
    target.mkdir()
    for name in ("root.qcow2", "vmlinuz", "initrd.img"):
        (target / name).write_bytes(b"cached")
    messages = []
    image = debian_base.build_debian_base(tmp_path, log=messages.append)
    assert image.disk == target / "root.qcow2"
    assert messages == [f"debian base image: cached at {target}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # nothing built beside it


def test_the_cache_key_follows_the_inputs():
    default = debian_base.cache_key()
    assert debian_base.cache_key() == default
    assert debian_base.cache_key(extra_packages=("docker.io",)) != default
    assert debian_base.cache_key(mirror="http://127.0.0.1:3142/debian") != default
    assert debian_base.cache_key(extra_packages=("python3",)) == default  # already in the list
