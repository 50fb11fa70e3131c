"""OpenAI dialect."""
