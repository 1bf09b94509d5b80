"""Sources kept in sync: folders and SMB shares whose files a collection follows (docs/sources.md)."""
