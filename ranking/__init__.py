"""The TFRS ranking model that consumes LEARN features (a later issue). Never imports torch."""
