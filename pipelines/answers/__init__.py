"""Answers with citations and conversations (LangChain)."""
