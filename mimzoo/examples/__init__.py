"""Small runnable examples (`python -m mimzoo.examples.<name>`), all offline."""
