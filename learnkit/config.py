"""The run config: the root that composes each library's own config section (YAML validated into
dataclasses; see `configs/*.yaml` and `docs/config.md`, generated from the fields' help)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.config import AbConfig
from export.config import ExportConfig
from learn_embed.config import CegConfig, I2IConfig, PchStageConfig
from learnkit.core.configload import PlainName, from_mapping, load_yaml, option
from learnkit.core.errors import ConfigError
from learnkit.core.sql import EngineConfig
from learnkit.data.importers.config import DataConfig
from learnkit.data.period import TestPeriodConfig
from ranking.config import RankingConfig


@dataclass
class Config:
    name: PlainName = option(help="the run's name: its outputs go to runs_dir/name")
    data: DataConfig = option(help="the dataset")
    ceg: CegConfig = option(help="content embeddings")
    i2i: I2IConfig = option(factory=I2IConfig, help="the item-to-item check")
    pch: PchStageConfig | None = option(None, help="the LEARN towers and the retrieval comparison")
    test_period: TestPeriodConfig = option(factory=TestPeriodConfig, help="the test period")
    export: ExportConfig | None = option(None, help="the feature tables and towers")
    ranking: RankingConfig | None = option(None, help="the rankers")
    ab: AbConfig | None = option(None, help="the simulated A/B test")
    engine: EngineConfig = option(factory=EngineConfig, help="the relational steps' engine (DuckDB in-process)")
    seed: int = option(0, help="seed of the reference rows, I2I sampling and the A/B", least=0)
    runs_dir: str = option("runs", help="where runs are written")
    source: str = option("", help="(set by the loader: the config file)")

    def __post_init__(self) -> None:
        self._outside_the_run_folder()
        if self.export is not None:
            if self.pch is None or self.export.method not in self.pch.methods:
                raise ValueError(f"key 'export.method': {self.export.method!r} is not one of the pch methods")
            if self.pch.methods[self.export.method].kind != "learn":
                raise ValueError("key 'export.method': only a trained (kind: learn) method can be exported")
            encoder = self.ceg.encoders.get(self.pch.methods[self.export.method].encoder or "")
            if self.export.content_model and encoder is not None and encoder.precision != "float":
                raise ValueError(
                    f"key 'export.content_model': the exported method's encoder runs at precision "
                    f"{encoder.precision}, which has no ONNX form here; set export.content_model: false"
                )
        if self.pch is not None and self.pch.train_before_ranker_validation:
            if not self.pch.train_before_test_period or self.ranking is None:
                raise ValueError(
                    "key 'pch.train_before_ranker_validation': needs pch.train_before_test_period and a 'ranking' "
                    "section (whose validation slice it keeps the towers from)"
                )
        if self.ranking is not None and self.export is None:
            raise ValueError("key 'ranking': the LEARN ranker reads the export; add an 'export' section")
        if self.ab is not None and self.ranking is None:
            raise ValueError("key 'ab': the A/B comparison needs the two rankers; add a 'ranking' section")
        if self.pch is None:
            return
        for name, method in self.pch.methods.items():
            if method.encoder is not None and method.encoder not in self.ceg.encoders:
                raise ValueError(
                    f"key 'pch.methods.{name}.encoder': {method.encoder!r} is not one of the "
                    f"CEG encoders ({', '.join(self.ceg.encoders)})"
                )
            try:  # overrides must be valid keys and values of pch.model / pch.train
                self.pch.method_configs(name)
            except ConfigError as exc:  # re-raised as ValueError so that the loader adds the file name
                raise ValueError(str(exc).removeprefix(": ")) from exc

    @property
    def ranker_validation(self) -> float | None:
        """The ranker's validation share, when the towers must not see its slice."""
        if self.pch is None or self.ranking is None or not self.pch.train_before_ranker_validation:
            return None
        return self.ranking.samples.valid_fraction

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def run_engine(self) -> EngineConfig:
        """`engine`, spilling into the run's own folder (`spill/`) unless `engine.spill_dir` says where."""
        if self.engine.spill_dir is not None:
            return self.engine
        return dataclasses.replace(self.engine, spill_dir=str(self.run_dir / "spill"))

    def _outside_the_run_folder(self) -> None:
        """What a run reads must not lie inside the folder it writes: a stage clears its folder before it runs,
        and would delete its own input."""
        run = self.run_dir.resolve()
        inputs = {"data.path": self.data.path, "ceg.cache_dir": self.ceg.cache_dir}
        inputs.update({f"ceg.encoders.{n}.model.path": e.model.path for n, e in self.ceg.encoders.items()})
        for key, value in inputs.items():
            if value is not None and Path(value).expanduser().resolve().is_relative_to(run):
                raise ValueError(
                    f"key '{key}': {value} lies inside this run's own folder {self.run_dir}, which the run clears "
                    "and rewrites; keep inputs and caches outside it"
                )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{path}: override {dotted!r}: key '{where}' is {node!r}, not a mapping")
        node[last] = value
    if "source" in data:
        raise ConfigError(f"{path}: unknown key 'source'")
    config = from_mapping(Config, data, source=str(path))
    config.source = str(path)
    return config
