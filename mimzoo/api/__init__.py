"""The public verbs: load, list, info. Each module imports torch only inside functions."""
