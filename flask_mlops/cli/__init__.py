"""`flask mlops ...` commands: thin layers over the same core functions the API calls."""
