"""Character memory: the chromadb store, retrieval scoring and forgetting."""
