"""Datasets from episodes, LoRA fine-tuning, scorer training and the model registry."""
