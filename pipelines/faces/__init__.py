"""The faces over the service: the CLI, the HTTP API, LangChain."""
