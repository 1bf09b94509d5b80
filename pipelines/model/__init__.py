"""The embedding model: loading, precision, int8, an embeddings server, warm-up."""
