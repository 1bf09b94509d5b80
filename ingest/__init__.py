"""From a file to Japanese chunks: loaders, normalisation and chunking, with no model and no database."""
