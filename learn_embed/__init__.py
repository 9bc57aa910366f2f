"""LEARN embeddings in PyTorch: the CEG content encoder (frozen LLM) and, later, the PCH towers."""
