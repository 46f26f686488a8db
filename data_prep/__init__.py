"""Dataset adapters: turn each dataset layout into the project's standard case layout."""
