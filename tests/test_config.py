"""The config schema holds the reference defaults; YAML and overrides merge with checks."""

from pathlib import Path

import pytest

from fasterrcnn.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    default_config,
    dump_config,
    load_config,
    packaged_config_names,
    packaged_config_path,
)

CFGS = Path(__file__).resolve().parents[1] / "cfgs"


def test_defaults_are_the_reference_numbers():
    cfg = default_config()
    train, test = cfg.TRAIN, cfg.TEST
    assert (train.LEARNING_RATE, train.MOMENTUM, train.WEIGHT_DECAY) == (0.001, 0.9, 0.0005)
    assert train.DOUBLE_BIAS and not train.BIAS_DECAY
    assert (train.SCALES, train.MAX_SIZE, train.USE_FLIPPED) == ((600,), 1000, True)
    assert (train.BATCH_SIZE, train.FG_FRACTION, train.FG_THRESH) == (128, 0.25, 0.5)
    assert (train.BG_THRESH_HI, train.BG_THRESH_LO) == (0.5, 0.1)
    assert (train.RPN_POSITIVE_OVERLAP, train.RPN_NEGATIVE_OVERLAP) == (0.7, 0.3)
    assert (train.RPN_FG_FRACTION, train.RPN_BATCHSIZE, train.RPN_NMS_THRESH) == (0.5, 256, 0.7)
    assert (train.RPN_PRE_NMS_TOP_N, train.RPN_POST_NMS_TOP_N, train.RPN_MIN_SIZE) == (
        12000,
        2000,
        8,
    )
    assert not train.RPN_CLOBBER_POSITIVES and train.BBOX_NORMALIZE_TARGETS_PRECOMPUTED
    assert train.BBOX_NORMALIZE_STDS == (0.1, 0.1, 0.2, 0.2)
    assert train.BBOX_NORMALIZE_MEANS == (0.0, 0.0, 0.0, 0.0)
    assert (test.SCALES, test.MAX_SIZE, test.NMS, test.RPN_NMS_THRESH) == ((600,), 1000, 0.3, 0.7)
    assert (test.RPN_PRE_NMS_TOP_N, test.RPN_POST_NMS_TOP_N, test.RPN_MIN_SIZE) == (6000, 300, 16)
    assert test.MAX_PER_IMAGE == 100
    assert cfg.PIXEL_MEANS == (102.9801, 115.9465, 122.7717)
    assert (cfg.FEAT_STRIDE, cfg.POOLING_SIZE, cfg.RESNET.FIXED_BLOCKS) == (16, 7, 1)
    assert cfg.ANCHOR_SCALES == (8.0, 16.0, 32.0) and cfg.ANCHOR_RATIOS == (0.5, 1.0, 2.0)
    assert cfg.MAX_NUM_GT_BOXES == 20 and cfg.BACKBONE.NORM == "frozen_bn"


def test_yaml_merges_over_defaults_and_base_chain(tmp_path):
    base = tmp_path / "base.yml"
    base.write_text("NET: res50\nTRAIN:\n  SCALES: [800]\n  MAX_SIZE: 1200\n")
    child = tmp_path / "child.yml"
    child.write_text("_BASE_: base.yml\nTRAIN:\n  MAX_SIZE: 1333\nPOOLING_MODE: pool\n")
    cfg = load_config(str(child))
    assert cfg.NET == "res50"
    assert cfg.TRAIN.SCALES == (800,) and cfg.TRAIN.MAX_SIZE == 1333
    assert cfg.POOLING_MODE == "pool"
    assert cfg.TRAIN.LEARNING_RATE == 0.001


def test_overrides_apply_last_and_parse_types(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("TRAIN:\n  LEARNING_RATE: 0.01\n")
    cfg = load_config(
        str(path),
        # fmt: off
        [
            "TRAIN.LEARNING_RATE",
            "0.5",
            "TRAIN.SCALES",
            "[256, 320]",
            "CLASS_AGNOSTIC",
            "true",
            "TEST.NMS",
            "1",
        ],
        # fmt: on
    )
    assert cfg.TRAIN.LEARNING_RATE == 0.5
    assert cfg.TRAIN.SCALES == (256, 320)
    assert cfg.CLASS_AGNOSTIC is True
    assert cfg.TEST.NMS == 1.0 and isinstance(cfg.TEST.NMS, float)


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("TRAIN:\n  LEARNING_RATEE: 0.01\n")
    with pytest.raises(ConfigError, match=r"bad\.yml.*TRAIN\.LEARNING_RATEE"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="NOPE"):
        load_config(None, ["NOPE", "1"])


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("TRAIN.RPN_BATCHSIZE", "0.5", "expects an integer"),
        ("TRAIN.USE_FLIPPED", "1", "expects true or false"),
        ("TRAIN.SCALES", "[a]", "expects an integer"),
        ("POOLING_MODE", "roi", "must be one of"),
        ("NET", "7", "expects a string"),
    ],
)
def test_wrong_type_names_the_key(key, value, message):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*" + message):
        load_config(None, [key, value])


def test_odd_overrides_and_non_mapping_file(tmp_path):
    with pytest.raises(ConfigError, match="pairs"):
        load_config(None, ["TRAIN.SCALES"])
    path = tmp_path / "list.yml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yml"):
        load_config(str(path))


def test_config_is_immutable_and_round_trips():
    cfg = load_config(None, ["NET", "res18"])
    with pytest.raises(AttributeError):
        cfg.NET = "vgg16"
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert "NET: res18" in dump_config(cfg)


SHIPPED_NETS = {
    "vgg16": "vgg16",
    "res50": "res50",
    "res101": "res101",
    "res101_ls": "res101",
    "shapes": "res18",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_NETS))
def test_shipped_configs_load_by_path_and_by_name(name):
    cfg = load_config(str(CFGS / f"{name}.yml"))
    assert cfg.NET == SHIPPED_NETS[name]
    assert load_config(name) == cfg == load_config(f"{name}.yml")


def test_packaged_names_are_the_cfgs_folder():
    assert packaged_config_names() == sorted(p.stem for p in CFGS.glob("*.yml"))
    assert Path(packaged_config_path("res101_ls")) == CFGS / "res101_ls.yml"
    # res101_ls inherits res101 through _BASE_ and changes the scale
    assert load_config("res101_ls").TRAIN.SCALES == (800,)
    assert load_config("res101").TRAIN.SCALES == (600,)


def test_unknown_config_name_lists_the_packaged_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"'no_such_cfg'.*res101, res101_ls, res50, shapes"):
        load_config("no_such_cfg")
    with pytest.raises(ConfigError, match="not found: .*missing.yml"):
        load_config(str(tmp_path / "missing.yml"))


def test_a_local_file_wins_over_a_packaged_name(tmp_path, monkeypatch):
    (tmp_path / "shapes").write_text("NET: vgg16\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("shapes").NET == "vgg16"


def test_removed_keys_are_unknown():
    for key in ("EXP_DIR", "TRAIN.BBOX_REG", "TRAIN.BBOX_NORMALIZE_TARGETS"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [key, "true"])


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1e-3", 0.001),
        ("5e-4", 0.0005),
        (".001", 0.001),
        ("1_000", 1000.0),
        ("1E-2", 0.01),
        ("2", 2.0),
    ],
)
def test_numbers_parse_as_users_write_them(tmp_path, text, expected):
    from_set = load_config(None, ["TRAIN.LEARNING_RATE", text])
    path = tmp_path / "lr.yml"
    path.write_text(f"TRAIN:\n  LEARNING_RATE: {text}\n  BBOX_NORMALIZE_STDS: [{text}, 1, 1, 1]\n")
    from_yaml = load_config(str(path))
    for cfg in (from_set, from_yaml):
        assert cfg.TRAIN.LEARNING_RATE == expected
        assert isinstance(cfg.TRAIN.LEARNING_RATE, float)
    assert from_yaml.TRAIN.BBOX_NORMALIZE_STDS[0] == expected


def test_integers_take_integral_spellings_only():
    assert load_config(None, ["TRAIN.MAX_ITERS", "1e3"]).TRAIN.MAX_ITERS == 1000
    assert load_config(None, ["TRAIN.MAX_ITERS", "1_000"]).TRAIN.MAX_ITERS == 1000
    assert isinstance(load_config(None, ["TRAIN.MAX_ITERS", "2.0"]).TRAIN.MAX_ITERS, int)
    for bad in ("1.5", "1e-3", "ten", "true"):
        with pytest.raises(ConfigError, match=r"TRAIN\.MAX_ITERS expects an integer"):
            load_config(None, ["TRAIN.MAX_ITERS", bad])
    for bad in ("abc", "nan", "inf", "1e-3x", "yes"):
        with pytest.raises(ConfigError, match=r"TRAIN\.LEARNING_RATE expects a number"):
            load_config(None, ["TRAIN.LEARNING_RATE", bad])
    assert load_config(None, ["DATA_DIR", "1e-3"]).DATA_DIR == "1e-3"  # strings stay strings
