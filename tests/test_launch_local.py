"""`builder launch --target local` without an image. The launch itself (followed, listed, refused
while running, destroyed cleanly, launched again on the same data disk, its data deleted on request)
is tested on the baked image, as a user launches it: tests/test_chain_local.py."""

from __future__ import annotations


def test_no_local_image_is_a_clear_error(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'empty'}}}\n")
    result = builder("launch", "alpha", "--target", "local")
    assert result.code == 1
    assert "no local image of ai-platform yet" in result.err and "builder bake --target local" in result.err
