"""flask-mlops: production MLOps for any Flask app, in two lines.

    mlops = MLOps(app)

    @app.post("/predict")
    @mlops.track("diabetes")
    def predict(): ...
"""

from __future__ import annotations

from .errors import MLOpsError
from .extension import MLOps, get_state

__version__ = "0.1.0"
__all__ = ["MLOps", "MLOpsError", "get_state", "__version__"]
