"""Chat-model backends behind LangChain's BaseChatModel: local transformers and OpenAI-compatible."""
