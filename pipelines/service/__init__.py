"""The service layer every face calls, the composition root, the query log and keys."""
