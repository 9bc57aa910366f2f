"""The stages of `learn-kit run`, in order. Each imports its framework lazily, inside its own function."""

from __future__ import annotations

from learnkit.pipeline import Stage
from learnkit.stages.ceg import run_ceg_stage
from learnkit.stages.data import data_files_digest, run_data
from learnkit.stages.i2i import run_i2i
from learnkit.stages.pch import run_pch

ALL = [
    Stage("data", (), lambda c: c.data, run_data, external_inputs=data_files_digest),
    Stage("ceg", ("data",), lambda c: c.ceg, run_ceg_stage),
    Stage("i2i", ("ceg",), lambda c: {"i2i": c.i2i, "encoders": list(c.ceg.encoders), "primary": c.ceg.primary},
          run_i2i),
    Stage("pch", ("data", "ceg"), lambda c: {"pch": c.pch, "template": c.ceg.template,
                                             "encoders": {n: e for n, e in c.ceg.encoders.items()}},
          run_pch, metrics_key="retrieval", enabled=lambda c: c.pch is not None),
]
