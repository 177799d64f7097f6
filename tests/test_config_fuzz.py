"""Property: no input makes `builder config` fail with a traceback; it either accepts or explains."""

from __future__ import annotations

import copy

import yaml
from conftest import EXAMPLE_CONFIG
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from builder.config.schema import PlatformConfig

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

EXAMPLE = yaml.safe_load(EXAMPLE_CONFIG.read_text())
# Real key names, so generated documents reach the validators and not only the unknown-key check.
SCHEMA_WORDS = sorted(
    {*PlatformConfig.model_fields, *(k for section in EXAMPLE.values() if isinstance(section, dict) for k in section)}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["gp3", "8443", "llama3.2:3b", "tag:x", "10.0.0.0/8", "eu-west-1", "{build_id}", "tailscale"]),
)
keys = st.one_of(st.sampled_from(SCHEMA_WORDS), st.text(max_size=12), st.integers(), st.booleans())
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def _leaf_paths(data, prefix=()):
    if isinstance(data, dict) and data:
        for key, child in data.items():
            yield from _leaf_paths(child, (*prefix, key))
    else:
        yield prefix


LEAVES = list(_leaf_paths(EXAMPLE))


def _assert_explained(result, usage: str | None = None):
    """Accepted (0) or explained (1); a usage error (2, click's) only where `usage` says which option."""
    if usage is not None and result.code == 2:
        assert f"Invalid value for {usage}" in result.err
        return
    assert result.code in (0, 1), result.err
    assert "Traceback" not in result.err + result.out
    assert "internal error" not in result.err
    if result.code == 1:
        assert "Nothing was changed." in result.err


@FUZZ
@given(st.text(max_size=400))
def test_any_text_file(builder, tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    _assert_explained(builder("config", "validate", str(path)))


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_file(builder, tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _assert_explained(builder("config", "validate", str(path)))


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
@example(document={"[key]": None})  # a user key spelled like pydantic's marker for a bad map key
def test_any_yaml_document(builder, tmp_path, document):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"version": 1, **document}))
    _assert_explained(builder("config", "validate", str(path)))


@FUZZ
@given(st.data())
def test_example_with_one_value_mutated(builder, tmp_path, data):
    document = copy.deepcopy(EXAMPLE)
    leaf = data.draw(st.sampled_from(LEAVES))
    parent = document
    for part in leaf[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "delete", "add-sibling"]))
    if action == "replace":
        parent[leaf[-1]] = data.draw(values)
    elif action == "delete":
        del parent[leaf[-1]]
    else:
        parent[data.draw(keys)] = data.draw(values)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    _assert_explained(builder("config", "validate", str(path)))


@FUZZ
@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_any_set_flag_and_environment_value(builder, monkeypatch, key, value):
    _assert_explained(builder("config", "show", "--set", f"{key}={value}"), usage="'--set'")
    name = "BUILDER__" + "".join(ch for ch in key.upper() if ch.isalnum() or ch == "_")
    if "\x00" not in value:
        monkeypatch.setenv(name, value)
        _assert_explained(builder("config", "show"))
        monkeypatch.delenv(name)
