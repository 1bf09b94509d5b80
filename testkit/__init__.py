"""Helpers that tests and benchmarks share: the offline GLuCoSE-shaped model, local servers, Japanese test documents."""
