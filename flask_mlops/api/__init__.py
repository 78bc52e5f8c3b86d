"""The `/mlops/api/...` JSON endpoints: thin layers that parse, call one core function, render."""
