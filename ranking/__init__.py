"""The TFRS ranker that consumes LEARN features. `ranking.samples` is framework-free; the rest is
TensorFlow (set TF_USE_LEGACY_KERAS=1 before importing it) and never imports torch."""
