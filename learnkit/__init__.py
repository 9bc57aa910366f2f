"""learn-kit: LEARN (LLM-driven knowledge adaptation) for an existing production ranker.

This package holds the CLI, configs, the canonical data model, importers and the pipeline runner.
Stage packages (learn_embed, export, ranking, eval) are imported lazily so that a process only pays
for the framework it uses.
"""

__version__ = "0.1.0"
