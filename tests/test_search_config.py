import pytest

from afsearch.errors import ConfigError
from afsearch.evaluate.packed import CONV_PACK, MLP_PACK
from afsearch.search.config import SearchConfig, parse_duration
from afsearch.search.preflight import resolve_pack


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "0", "10x", "1d"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('space = "gp"\nbudget = 12\ntime = "10m"\n[task_config]\nplanted = "sin(x)"\n')
    config = SearchConfig.load(path, {"budget": 30, "seed": None})
    assert (config.space, config.budget, config.time_limit_s) == ("gp", 30, 600)
    assert config.task_config == {"planted": "sin(x)"}


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"budget": 0}, "budget"),
        ({"budget": "ten"}, "expected int"),
        ({"backend": "spark"}, "allowed: ray, local"),
        ({"bogus": 1}, "unknown key"),
        ({"baselines": ["relu", "nope"]}, "unknown reference"),
        ({"objectives": ["speed"]}, "objective"),
        ({"name": "../escape"}, "not a valid run name"),
        ({"ladder": "yes"}, "expected bool"),
        ({"shortlist": -1}, "shortlist"),
        ({"shortlist_seeds": 0}, "shortlist_seeds"),
    ],
)
def test_invalid_configs_name_the_key(data, fragment):
    with pytest.raises(Exception) as info:
        SearchConfig.from_dict(data, "run.toml")
    assert fragment in str(info.value)


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("budget = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        SearchConfig.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        SearchConfig.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("tasks, pack", [
    (["mnist1d-mlp"], MLP_PACK),
    (["mnist1d-cnn"], CONV_PACK),
    (["mnist1d-mlp", "digits-cnn"], CONV_PACK),  # the smallest default of the search's tasks
    (["mnist1d-mlp", "lm-transformer"], 1),  # the transformer trains one by one
])
def test_default_pack_follows_the_tasks(tasks, pack):
    config = SearchConfig(task=tasks[0], extra_tasks=tasks[1:])
    resolve_pack(config)
    assert config.pack == pack
    config = SearchConfig(task=tasks[0], extra_tasks=tasks[1:], pack=3)
    resolve_pack(config)
    assert config.pack == 3  # an explicit --pack is kept
