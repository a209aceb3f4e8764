import pytest

from afsearch.errors import SpaceError
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

FILE = "spaces/x.toml"


def test_load_toml_parses(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('name = "a"\n[limits]\nmax_nodes = 3\n')
    assert load_toml(path) == {"name": "a", "limits": {"max_nodes": 3}}


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "a"\n\nmax_nodes = = 3\n')
    with pytest.raises(SpaceError) as err:
        load_toml(path)
    assert str(path) in str(err.value) and "line 3" in str(err.value)


def test_missing_file_names_file(tmp_path):
    with pytest.raises(SpaceError, match="nope.toml: cannot read"):
        load_toml(tmp_path / "nope.toml")


def test_message_format():
    err = space_error(FILE, "ops.unary[2]", "unknown value 'foo'", ["neg", "abs"])
    assert str(err) == "spaces/x.toml: key 'ops.unary[2]': unknown value 'foo'; allowed: neg, abs"
    assert str(space_error(FILE, "k", "bad")) == "spaces/x.toml: key 'k': bad"
    assert str(space_error(FILE, "k", "bad", {"b", "a"})).endswith("allowed: a, b")


def test_require_walks_dotted_keys_and_checks_types():
    doc = {"limits": {"max_nodes": 3, "rate": 1}, "flag": True}
    assert require(doc, "limits.max_nodes", int, FILE) == 3
    assert require(doc, "limits.rate", float, FILE) == 1.0  # integers are accepted as numbers
    with pytest.raises(SpaceError) as err:
        require(doc, "limits.min_nodes", int, FILE)
    assert str(err.value) == "spaces/x.toml: key 'limits.min_nodes': missing; allowed: integer"
    with pytest.raises(SpaceError) as err:
        require(doc, "flag", int, FILE)  # a boolean is not an integer
    assert (
        str(err.value)
        == "spaces/x.toml: key 'flag': expected integer, got boolean True; allowed: integer"
    )
    with pytest.raises(SpaceError, match="key 'limits.max_nodes': expected string, got integer 3"):
        require(doc, "limits.max_nodes", str, FILE)
    with pytest.raises(SpaceError, match="key 'flag': expected a table"):
        require(doc, "flag.inner", int, FILE)


def test_allowed_values_for_scalars_and_list_items():
    doc = {"kind": "swish", "ops": ["add", "mul", "pow"], "mixed": ["a", 2]}
    with pytest.raises(SpaceError) as err:
        require(doc, "kind", str, FILE, allowed=["evonorm", "gp"])
    assert (
        str(err.value)
        == "spaces/x.toml: key 'kind': unknown value string 'swish'; allowed: evonorm, gp"
    )
    with pytest.raises(SpaceError) as err:
        require(doc, "ops", list, FILE, allowed=["add", "mul"])
    assert "key 'ops[2]': unknown value string 'pow'; allowed: add, mul" in str(err.value)
    with pytest.raises(SpaceError, match=r"key 'mixed\[1\]': expected string, got integer 2"):
        require(doc, "mixed", list, FILE, items=str)
    with pytest.raises(SpaceError, match="missing; allowed: evonorm"):
        require({}, "kind", str, FILE, allowed=["evonorm"])


def test_minimum():
    doc = {"n": -1, "m": 0}
    assert require(doc, "m", int, FILE, minimum=0) == 0
    with pytest.raises(SpaceError) as err:
        require(doc, "n", int, FILE, minimum=0)
    assert str(err.value) == "spaces/x.toml: key 'n': -1 is below the minimum; allowed: int >= 0"
    with pytest.raises(SpaceError, match="key 'm': 0 is below the minimum; allowed: int >= 1"):
        optional(doc, "m", int, FILE, default=5, minimum=1)


def test_optional():
    assert optional({}, "limits.groups", int, FILE, default=32) == 32
    assert optional({"limits": {"groups": 8}}, "limits.groups", int, FILE, default=32) == 8
    with pytest.raises(SpaceError, match="key 'limits.groups': expected integer"):
        optional({"limits": {"groups": "8"}}, "limits.groups", int, FILE, default=32)


def test_check_keys():
    doc = {"name": "a", "limits": {"max_nodes": 3, "max_node": 4}}
    check_keys(doc, "", ["name", "limits"], FILE)
    check_keys(doc, "ops", ["unary"], FILE)  # an absent table has no unknown keys
    with pytest.raises(SpaceError) as err:
        check_keys(doc, "limits", ["min_nodes", "max_nodes"], FILE)
    assert (
        str(err.value)
        == "spaces/x.toml: key 'limits.max_node': unknown key; allowed: max_nodes, min_nodes"
    )
    with pytest.raises(SpaceError, match="key 'name': unknown key; allowed: limits"):
        check_keys(doc, "", ["limits"], FILE)
    with pytest.raises(SpaceError, match="key 'name': expected a table"):
        check_keys(doc, "name", ["x"], FILE)
