import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from afsearch.cli import main
from afsearch.errors import SpaceError
from afsearch.spaces import KINDS, SPACES_DIR, list_spaces, load_space
from afsearch.spaces.base import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["aglu", "eafo", "evonorm", "gp", "pau", "swish", "swish_beta", "xsilu"]


def test_shipped_spaces_load():
    assert SPACES_DIR == ROOT / "afsearch" / "search_spaces"  # package data (wheel)
    assert (ROOT / "search_spaces").resolve() == SPACES_DIR  # the top-level folder links to it
    assert set(SHIPPED) <= set(list_spaces())
    for name in SHIPPED:
        space = load_space(name)
        assert isinstance(space, SearchSpace)
        assert space.size() is None or space.size() > 0


def test_unknown_name_lists_available():
    with pytest.raises(SpaceError) as err:
        load_space("nope")
    assert "nope" in str(err.value) and "swish" in str(err.value) and "allowed:" in str(err.value)


def test_missing_file():
    with pytest.raises(SpaceError, match="missing.toml"):
        load_space("missing.toml")


def test_unknown_kind(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('name = "k"\nkind = "lstm"\n')
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert f"{path}: key 'kind'" in str(err.value) and ", ".join(KINDS) in str(err.value)


def test_user_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((SPACES_DIR / "swish_beta.toml").read_text().replace('"swish_beta"', '"mine"'))
    assert load_space(str(path)).name == "mine"


def test_genotypes_round_trip_through_json_in_a_fresh_process():
    rng = random.Random(0)
    genotypes, expected = {}, {}
    for name in SHIPPED:
        space = load_space(name)
        gs = [space.sample(rng) for _ in range(3)]
        gs.append(space.mutate(gs[0], rng))
        if space.has_crossover:
            gs.extend(space.crossover(gs[1], gs[2], rng))
        genotypes[name] = json.loads(json.dumps(gs))
        expected[name] = [space.to_candidate(g).to_json() for g in gs]
    script = (
        "import json, sys\n"
        "from afsearch.spaces import load_space\n"
        "data = json.load(sys.stdin)\n"
        "print(json.dumps({n: [load_space(n).to_candidate(g).to_json() for g in gs] for n, gs in data.items()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(genotypes),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(out.stdout) == expected


def test_cli_list(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "976,640,631,250" in out and "unbounded" in out and "beta" in out


def test_cli_list_json_with_user_file(capsys, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((SPACES_DIR / "xsilu.toml").read_text())
    assert main(["spaces", "--json", "--space", str(path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["file"] == str(path) and rows[-1]["kind"] == "parametric"
    swish = next(r for r in rows if r["name"] == "swish")
    assert swish["size"] == 976640631250 and len(swish["primitives"]["unary"]) == 25


@pytest.mark.parametrize("name", ["swish", "gp", "eafo", "pau"])
def test_cli_show(capsys, name):
    assert main(["spaces", "show", name, "--n", "3", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("formula:") == 3 and out.count("genotype:") == 3
    if name == "eafo":
        assert out.count("entropy (nats") == 3


def test_cli_show_is_seeded(capsys):
    main(["spaces", "show", "gp", "--n", "5", "--seed", "9", "--json"])
    first = capsys.readouterr().out
    main(["spaces", "show", "gp", "--n", "5", "--seed", "9", "--json"])
    assert capsys.readouterr().out == first
    assert len(first.splitlines()) == 5


def test_cli_malformed_file_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "b"\nkind = "gp"\n[limits]\nmax_height = -1\nmax_size = 10\n'
        '[primitives]\nops = ["add"]\n'
    )
    assert main(["spaces", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "limits.max_height" in err and "allowed:" in err


def test_cli_subprocess_exit_code(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "b"\nkind = "swish"\n[limits]\nmax_units = 1\n[unary]\nid = "foo(u)"\n'
        '[binary]\nadd = "a + b"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "afsearch.cli", "spaces", "show", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert str(path) in out.stderr and "unary.id" in out.stderr and "allowed:" in out.stderr
