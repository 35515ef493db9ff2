"""The App's wiring, one module per thing it owns; server.py tells the story in order."""
