"""The store and its indexes: Chroma, the keyword index, collections, originals, the indexer."""
