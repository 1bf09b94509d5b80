"""Retrieval: the searcher and its hits, reranking, highlighting, the viewer of originals."""
