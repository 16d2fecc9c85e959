"""Serving characters: the web page and the OpenAI-compatible API on one FastAPI app."""
