"""Config precedence, type conversion and error messages."""

from __future__ import annotations

import pytest
import yaml

from probtalk3d_cli.config import Config, ConfigError, from_dict, load_config


def test_default_yaml_mirrors_dataclass_defaults(repo_root):
    on_disk = yaml.safe_load((repo_root / "configs" / "default.yaml").read_text())
    assert on_disk == Config().to_dict()


def test_default_yaml_has_a_comment_on_every_key_line(repo_root):
    for line in (repo_root / "configs" / "default.yaml").read_text().splitlines():
        if line.startswith("  ") and ":" in line and line.strip()[0] != "#":
            assert "#" in line, f"uncommented key in default.yaml: {line!r}"


def test_official_defaults():
    c = Config()
    assert (c.prior.d_model, c.prior.ff_dim, c.prior.num_heads, c.prior.enc_layers, c.predictor.num_layers) == (
        256, 384, 8, 6, 12)
    assert (c.prior.w_quant, c.prior.w_exp, c.prior.w_jaw) == (1.5, 0.5, 0.1)
    assert (c.predictor.w_latent, c.predictor.w_exp, c.predictor.w_jaw) == (1.0, 0.15, 0.1)
    assert (c.train_prior.optimizer, c.train_prior.lr, c.train_prior.weight_decay) == ("adamw", 1e-4, 0.01)
    assert (c.train_pred.optimizer, c.train_pred.lr, c.train_pred.weight_decay) == ("adam", 1e-5, 0.0)
    assert c.train_prior.betas == [0.9, 0.98] and c.train_prior.eps == 1e-9
    assert (c.generate.temperature, c.generate.fact) == (0.2, 20.0)


def test_precedence_file_then_set_then_flags(tmp_path):
    f1 = tmp_path / "a.yaml"
    f1.write_text("train_prior:\n  lr: 0.5\n  batch_size: 3\ngenerate:\n  num_samples: 4\n")
    f2 = tmp_path / "b.yaml"
    f2.write_text("train_prior:\n  batch_size: 7\n")
    c = load_config([f1, f2], ["train_prior.lr=3e-4", "generate.num_samples=5"], {"generate.num_samples": 6,
                                                                                    "train_prior.epochs": None})
    assert c.train_prior.batch_size == 7  # second file wins over the first
    assert c.train_prior.lr == pytest.approx(3e-4)  # --set beats the file (and '3e-4' is parsed as a float)
    assert c.generate.num_samples == 6  # explicit flag beats --set
    assert c.train_prior.epochs == 201  # a flag left at None does not override


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["train_prior.learning_rate=1"])
    msg = str(e.value)
    assert "train_prior.learning_rate" in msg and "lr" in msg and "batch_size" in msg


def test_unknown_section_lists_sections(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("trainer:\n  lr: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config([f])
    assert "trainer" in str(e.value) and "train_prior" in str(e.value) and str(f) in str(e.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train_prior.batch_size=abc", "integer"),
        ("train_prior.batch_size=2.5", "integer"),
        ("train_prior.batch_size=-1", "greater than 0"),
        ("train_pred.lr=-0.1", "greater than 0"),
        ("train_prior.precision=fp8", "fp32, bf16"),
        ("prior.token_layout=weird", "per_frame, official"),
        ("generate.deterministic=maybe", "true or false"),
        ("train_prior.betas=[0.9]", "betas"),
        ("render.color=[2, 0, 0]", "render.color"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert fragment in str(e.value)
    assert override.split("=")[0].split(".")[0] in str(e.value)


def test_bool_and_null_parsing():
    c = load_config(overrides=["generate.deterministic=true", "data.max_seconds=null", "data.root=/x/y"])
    assert c.generate.deterministic is True and c.data.max_seconds is None and c.data.root == "/x/y"


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(overrides=["train_prior.lr"])


def test_invalid_yaml_is_one_clear_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train_prior: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([f])


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config"):
        load_config([tmp_path / "nope.yaml"])


def test_yaml_objects_are_not_constructed(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("data:\n  root: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError):
        load_config([f])


def test_round_trip_through_dict(tmp_path):
    c = load_config(overrides=["prior.kind=vae", "train_pred.batch_size=3"])
    again = from_dict(c.to_dict())
    assert again == c


def test_tiny_config_loads(tiny_config):
    assert tiny_config.prior.d_model == tiny_config.predictor.d_model
    assert tiny_config.audio.model == "tiny"
