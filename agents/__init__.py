"""Characters: personas, the bank, chat-model backends, prompts and the critic."""
