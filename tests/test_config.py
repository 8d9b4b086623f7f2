import pytest

from augur.config import OPTIONS, Config, ConfigError, env_name, parse_set_args


def test_defaults_cover_every_declared_option():
    cfg = Config()
    assert set(cfg) == set(OPTIONS)
    assert cfg["kafka.bootstrap-servers"] == "127.0.0.1:9092"


def test_priority_file_then_env_then_overrides(tmp_path):
    f = tmp_path / "augur.yaml"
    f.write_text("kafka:\n  bootstrap-servers: file:1\nstream:\n  window-size-ms: 30000\n  parallelism: 3\n")
    env = {env_name("stream.parallelism"): "2", env_name("kafka.bootstrap-servers"): "env:1"}
    cfg = Config.load(f, {"kafka.bootstrap-servers": "cli:1"}, environ=env)
    assert cfg["stream.window-size-ms"] == 30000      # from the file, coerced to int
    assert cfg["stream.parallelism"] == 2             # env beats file
    assert cfg["kafka.bootstrap-servers"] == "cli:1"  # explicit override beats env


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        Config({"stream.windw-size-ms": 1})
    with pytest.raises(ConfigError, match="must be > 0"):
        Config({"stream.window-size-ms": 0})
    with pytest.raises(ConfigError, match="invalid value"):
        Config({"ensemble.enter": "high"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["stream.parallelism"])


def test_env_names():
    assert env_name("kafka.bootstrap-servers") == "AUGUR_KAFKA_BOOTSTRAP_SERVERS"


def test_http_cgroup_paths_are_normalised_and_may_not_nest():
    """collect.http-cgroups: a socket in two listed groups, one inside the other, would run the programs twice."""
    assert Config()["collect.http-cgroups"] == ()   # the root: every socket
    cfg = Config.load(environ={env_name("collect.http-cgroups"): "system.slice/nginx.service/, /kubepods.slice"})
    assert cfg["collect.http-cgroups"] == ("/system.slice/nginx.service", "/kubepods.slice")
    assert Config({"collect.http-cgroups": ["/a", "/a/"]})["collect.http-cgroups"] == ("/a",)
    assert Config({"collect.http-cgroups": "/a,/ab"})["collect.http-cgroups"] == ("/a", "/ab")  # siblings
    with pytest.raises(ConfigError, match="/a contains /a/b"):
        Config({"collect.http-cgroups": "/a/b,/a"})
    with pytest.raises(ConfigError, match="/ contains /x"):
        Config({"collect.http-cgroups": "/x,/"})
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        Config({"collect.http-cgroups": "/a/../b"})
