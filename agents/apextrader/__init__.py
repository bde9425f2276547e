from __future__ import annotations

#: The one version: the package metadata (pyproject's dynamic version), the default image tag of a
#: spec and of the operator, and the charts' version/appVersion (`make chart`) derive from it; a
#: test keeps the Dockerfile's VERSION default equal to it.
__version__ = "0.1.0"
