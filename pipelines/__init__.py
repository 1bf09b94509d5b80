"""From chunks to an index and from a question to hits: settings, embedder, Chroma store, indexing, retrieval, CLI."""
